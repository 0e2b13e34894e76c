"""
Failures are classified (retry or not) and say what to fix, without ever showing the password.
"""

import logging
import socket
import subprocess
import sys
import textwrap
import time
import traceback

import pytest

from clickhouse_outbox.clickhouse.backends import build_backend
from clickhouse_outbox.clickhouse.backends.http import MAX_ERROR_CHARS, error_from_response
from clickhouse_outbox.clickhouse.errors import ClickHouseError, ClickHouseRejected, ClickHouseUnavailable
from clickhouse_outbox.clickhouse.tables import COURSE_BLOCKS
from tests.proxy import FaultProxy

from .conftest import block_row, create_table, encode_rows, select_blocks

WRONG_PASSWORD = "not-the-Secret-9f3a"


def everything_said_about(exc, caplog):
    """All the text an operator could see about an error: message, repr, traceback, logs."""
    return "\n".join([
        str(exc), repr(exc), "".join(traceback.format_exception(exc)), caplog.text,
    ])


def unused_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_wrong_password_is_retryable_and_names_the_user_not_the_password(clickhouse_server_config, caplog):
    caplog.set_level(logging.DEBUG)
    backend = build_backend(dict(clickhouse_server_config, password=WRONG_PASSWORD))

    with pytest.raises(ClickHouseRejected) as caught:
        backend.insert(COURSE_BLOCKS, encode_rows([block_row(1)]), rows=1)

    error = caught.value
    assert error.retryable is True
    assert error.http_status == 401
    assert error.code == 193
    assert f"credentials of user '{clickhouse_server_config['username']}'" in str(error)
    assert "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG" in str(error)
    text = everything_said_about(error, caplog)
    assert WRONG_PASSWORD not in text
    assert clickhouse_server_config["password"] not in text


def test_the_right_password_never_appears_in_an_error_either(http_backend, clickhouse_server_config, caplog):
    caplog.set_level(logging.DEBUG)
    create_table(http_backend)

    with pytest.raises(ClickHouseRejected) as caught:
        http_backend.insert(COURSE_BLOCKS, encode_rows([block_row(1, dump_id="bad")]), rows=1)

    assert clickhouse_server_config["password"] not in everything_said_about(caught.value, caplog)
    assert clickhouse_server_config["password"] not in repr(http_backend)


def test_unknown_user_is_a_credentials_error(clickhouse_server_config):
    backend = build_backend(dict(clickhouse_server_config, username="nobody-here"))

    with pytest.raises(ClickHouseRejected) as caught:
        backend.query("SELECT 1")

    assert caught.value.retryable is True
    assert "credentials of user 'nobody-here'" in str(caught.value)


def test_server_down_is_unavailable_and_says_where(clickhouse_server_config, caplog):
    port = unused_port()
    backend = build_backend(dict(clickhouse_server_config, url=f"http://127.0.0.1:{port}"))

    with pytest.raises(ClickHouseUnavailable) as caught:
        backend.insert(COURSE_BLOCKS, encode_rows([block_row(1)]), rows=1)

    assert caught.value.retryable is True
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "Connection refused" in str(caught.value)
    assert clickhouse_server_config["password"] not in everything_said_about(caught.value, caplog)


def test_read_timeout_after_sending_is_retryable_and_the_insert_may_have_happened(
    http_backend, clickhouse_server_config
):
    create_table(http_backend)

    with FaultProxy(clickhouse_server_config["url"]) as proxy:
        proxy.delay_response(3)
        slow = build_backend(
            dict(clickhouse_server_config, url=proxy.url, database=http_backend.database, timeout_secs=1)
        )
        slow._server_info = http_backend.server_info()  # detect the version without the delay
        started = time.monotonic()
        with pytest.raises(ClickHouseUnavailable) as caught:
            slow.insert(COURSE_BLOCKS, encode_rows([block_row(1)]), rows=1)
        elapsed = time.monotonic() - started
        slow.close()

    assert caught.value.retryable is True
    assert "timeout_secs=1s" in str(caught.value)
    assert "may or may not" in str(caught.value)
    assert elapsed < 2.5
    # The server did get the rows: why a resend must carry the same deduplication token.
    assert [row["order"] for row in select_blocks(http_backend)] == [1]


def test_slow_query_times_out(clickhouse_server_config):
    backend = build_backend(dict(clickhouse_server_config, timeout_secs=1))

    with pytest.raises(ClickHouseUnavailable) as caught:
        backend.query("SELECT sleep(3)")

    assert caught.value.retryable is True
    assert "did not answer" in str(caught.value)


def test_unknown_database_is_retryable(clickhouse_server_config):
    backend = build_backend(dict(clickhouse_server_config, database="no_such_database_here"))

    with pytest.raises(ClickHouseRejected) as caught:
        backend.insert(COURSE_BLOCKS, encode_rows([block_row(1)]), rows=1)

    assert caught.value.code == 81
    assert caught.value.retryable is True


def test_connect_timeout_says_where_and_which_timeout():
    """A listener whose backlog is full drops new connections' SYNs: connecting hangs, as to an overloaded host."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        filler = socket.create_connection(("127.0.0.1", port), timeout=2)  # fills the backlog of 1
        try:
            backend = build_backend({"url": f"http://127.0.0.1:{port}", "database": "event_sink",
                                     "connect_timeout_secs": 1})
            started = time.monotonic()
            with pytest.raises(ClickHouseUnavailable) as caught:
                backend.query("SELECT 1")
            elapsed = time.monotonic() - started
        finally:
            filler.close()

    assert caught.value.retryable is True
    assert f"127.0.0.1:{port} within connect_timeout_secs=1s (timed out)" in str(caught.value)
    assert elapsed < 2  # the connect timeout, and a margin for a loaded machine


class TestErrorFromResponse:
    """How an HTTP answer becomes an error, including headers the 18.16 server never sends."""

    def test_success(self):
        assert error_from_response(200, {}, b"", username="u") is None

    def test_code_from_the_old_server_body(self):
        error = error_from_response(
            500, {}, b"Code: 376, e.displayText() = DB::Exception: Cannot parse uuid", username="u"
        )
        assert (error.code, error.retryable, error.http_status) == (376, False, 500)

    def test_code_from_the_header_wins(self):
        error = error_from_response(
            500, {"X-ClickHouse-Exception-Code": "27"}, b"Code: 241. DB::Exception: ...", username="u"
        )
        assert (error.code, error.retryable) == (27, False)

    def test_an_exception_code_on_a_200_is_an_error(self):
        error = error_from_response(200, {"X-ClickHouse-Exception-Code": "241"}, b"partial...", username="u")
        assert (error.code, error.retryable) == (241, True)

    def test_current_server_auth_failure(self):
        body = b"Code: 516. DB::Exception: outbox: Authentication failed: password is incorrect (AUTHENTICATION_FAILED)"
        error = error_from_response(403, {"X-ClickHouse-Exception-Code": "516"}, body, username="outbox")
        assert error.retryable is True
        assert "credentials of user 'outbox'" in str(error)

    def test_missing_grant_is_retryable(self):
        body = b"Code: 497. DB::Exception: outbox: Not enough privileges. (ACCESS_DENIED)"
        error = error_from_response(500, {"X-ClickHouse-Exception-Code": "497"}, body, username="outbox")
        assert error.retryable is True
        assert "privileges" in str(error)

    @pytest.mark.parametrize("status", [502, 503, 504])
    def test_a_proxy_saying_the_server_is_down(self, status):
        error = error_from_response(status, {}, b"<html>Bad Gateway</html>", username="u")
        assert isinstance(error, ClickHouseUnavailable)
        assert error.retryable is True

    def test_not_clickhouse_at_all(self):
        error = error_from_response(404, {}, b"", username="u")
        assert error.retryable is True
        assert "no ClickHouse error code (empty body)" in str(error)
        assert "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG['url']" in str(error)

    def test_a_huge_body_is_truncated(self):
        body = b"Code: 27, e.displayText() = DB::Exception: Cannot parse input: " + b"x" * 200_000
        error = error_from_response(500, {}, body, username="u")
        assert len(str(error)) < MAX_ERROR_CHARS + 300
        assert "more characters" in str(error)
        assert error.code == 27

    def test_a_body_that_is_not_utf8(self):
        error = error_from_response(500, {}, b"Code: 6, \xff\xfe broken", username="u")
        assert error.code == 6


def test_chdb_store_locked_by_another_process_is_retryable(tmp_path):
    path = tmp_path / "store"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from chdb import session
            s = session.Session({str(path)!r})
            s.query("SELECT 1")
            print("holding", flush=True)
            sys.stdin.readline()
            s.close()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        backend = build_backend({"url": f"chdb://{path}", "database": "default"})

        with pytest.raises(ClickHouseUnavailable) as caught:
            backend.query("SELECT 1 AS one")

        assert caught.value.retryable is True
        assert "in use by another process" in str(caught.value)
        assert f"PID: {holder.pid}" in str(caught.value)
    finally:
        holder.communicate("done\n", timeout=30)

    assert backend.query("SELECT 1 AS one") == [{"one": 1}]


def test_chdb_one_store_per_process_is_retryable(tmp_path):
    first = build_backend({"url": f"chdb://{tmp_path / 'a'}", "database": "default"})
    second = build_backend({"url": f"chdb://{tmp_path / 'b'}", "database": "default"})

    with first.session(), pytest.raises(ClickHouseUnavailable) as caught:
        second.query("SELECT 1")

    assert caught.value.retryable is True
    assert "one store per process" in str(caught.value)
    assert second.query("SELECT 1 AS one") == [{"one": 1}]


def test_chdb_bad_statement_has_its_code(chdb_backend):
    with pytest.raises(ClickHouseError) as caught:
        chdb_backend.command("SELEKT 1")
    assert caught.value.code == 62
