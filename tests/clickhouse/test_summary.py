"""
Trusting what the server says it wrote (X-ClickHouse-Summary).

The 18.16 test server sends no X-ClickHouse-Summary header, and servers before 22.5 send
one that is all zeros, so these tests feed the decision the headers a current server
(22.5+) sends, as documented and as captured from one (over HTTP, from a loopback server
that answers as a current ClickHouse does: tests/misbehaving.like_clickhouse):
    X-ClickHouse-Summary: {"read_rows":"3","read_bytes":"30","written_rows":"3",
                           "written_bytes":"30","total_rows_to_read":"0","result_rows":"3", ...}
"""

import json
from contextlib import contextmanager

import pytest

from clickhouse_outbox.clickhouse.backends.base import ServerInfo, check_written_rows
from clickhouse_outbox.clickhouse.backends.http import HttpBackend, written_rows_from_summary
from clickhouse_outbox.clickhouse.errors import WriteMismatch
from clickhouse_outbox.clickhouse.tables import COURSE_BLOCKS
from tests.misbehaving import MisbehavingServer, like_clickhouse


def summary(written_rows):
    return json.dumps({
        "read_rows": str(written_rows), "read_bytes": "4096", "written_rows": str(written_rows),
        "written_bytes": "4096", "total_rows_to_read": "0", "result_rows": str(written_rows),
        "result_bytes": "4096", "elapsed_ns": "2134567",
    })


def test_all_rows_written_is_success():
    assert check_written_rows(written_rows_from_summary(summary(500)), rows=500, dedup_token_sent=True) == 500


def test_fewer_rows_written_is_a_retryable_mismatch():
    with pytest.raises(WriteMismatch) as caught:
        check_written_rows(written_rows_from_summary(summary(499)), rows=500, dedup_token_sent=True)
    assert caught.value.retryable is True
    assert "499 of the 500" in str(caught.value)


def test_nothing_written_for_a_deduplicated_resend_is_success():
    assert check_written_rows(0, rows=500, dedup_token_sent=True) == 0


def test_nothing_written_without_a_token_is_a_mismatch():
    with pytest.raises(WriteMismatch):
        check_written_rows(0, rows=500, dedup_token_sent=False)


def test_more_rows_written_counts_materialized_views():
    assert check_written_rows(1000, rows=500, dedup_token_sent=False) == 1000


def test_no_summary_means_unknown():
    assert written_rows_from_summary(None) is None
    assert check_written_rows(None, rows=500, dedup_token_sent=False) is None


@pytest.mark.parametrize("header", ["not json", "{}", '{"written_rows": "many"}', "[1]"])
def test_a_malformed_summary_is_ignored(header):
    assert written_rows_from_summary(header) is None


@contextmanager
def current_server_backend(summary_header):
    """An HttpBackend on a loopback server that answers as ClickHouse 24.8 does, with this summary header."""
    with MisbehavingServer(like_clickhouse("24.8.4.13", json.loads(summary_header))) as server:
        backend = HttpBackend(server.url, database="event_sink")
        backend.server = server
        yield backend
        backend.close()


def test_insert_on_a_current_server_checks_the_summary_and_sends_its_settings():
    with current_server_backend(summary(2)) as backend:
        result = backend.insert(COURSE_BLOCKS, b"{}\n{}\n", rows=2, dedup_token="dump:0")

    assert result.written_rows == 2
    version_query, insert = backend.server.requests
    assert b"version()" in version_query.body
    params = insert.params
    assert params["insert_deduplication_token"] == "dump:0"
    assert params["async_insert"] == "0"
    assert params["wait_end_of_query"] == "1"


def test_insert_on_a_current_server_raises_on_a_short_write():
    with current_server_backend(summary(1)) as backend, pytest.raises(WriteMismatch):
        backend.insert(COURSE_BLOCKS, b"{}\n{}\n", rows=2, dedup_token="dump:0")


def test_insert_on_a_current_server_accepts_a_deduplicated_resend():
    with current_server_backend(summary(0)) as backend:
        assert backend.insert(COURSE_BLOCKS, b"{}\n{}\n", rows=2, dedup_token="dump:0").written_rows == 0


def test_a_zero_summary_from_a_server_before_22_5_is_not_trusted():
    with current_server_backend(summary(0)) as backend:
        backend._server_info = ServerInfo(version=(21, 8, 15, 7))

        assert backend.insert(COURSE_BLOCKS, b"{}\n{}\n", rows=2).written_rows is None
