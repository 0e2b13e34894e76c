"""
Fault test 7 of issue 3: the client gives up after the server has committed.

On the old server (18.16, no deduplication token) a FaultProxy forwards the INSERT at
once, receives ClickHouse's answer (so the rows are written), then holds it longer than
the client's read timeout, or closes the connection instead of delivering it. The drain
records a retryable failure; the retry resends the same batch: every row is there, and
the only duplicates are exact copies of that batch.

On chdb (current engine, deduplication token) a lost acknowledgement cannot be produced by
a real timeout in-process, so the backend's insert runs for real and then raises the
timeout the HTTP backend would raise: the drain's own bookkeeping puts the batch back to
retry, and the resend with the same token leaves no duplicate at all.
"""

import hashlib

import pytest

from clickhouse_outbox.clickhouse.backends.chdb import ChdbBackend
from clickhouse_outbox.clickhouse.errors import ClickHouseUnavailable
from clickhouse_outbox.clickhouse.tables import COURSE_BLOCKS
from clickhouse_outbox.models import Batch, OutboxEntry
from clickhouse_outbox.outbox.drain import drain
from tests.factories import CourseSnapshotFactory
from tests.faults.helpers import (
    TABLES,
    assert_all_sent,
    assert_every_row_at_least_once_and_duplicates_exact,
    assert_every_row_exactly_once,
    ch_count,
    ch_key_counts,
    drain_everything,
    queued_keys,
    queued_rows,
    report,
    row_figures,
)

pytestmark = pytest.mark.django_db

READ_TIMEOUT = 1
HOLD = 3  # seconds the proxy holds the committed answer: longer than READ_TIMEOUT


def course_blocks_insert(head):
    """Only the INSERT into course_blocks is faulted (the table name is in the URL's query)."""
    first_line = head.split(b"\r\n", 1)[0]
    return b"query=INSERT" in first_line and b"course_blocks" in first_line


def blocks_batch():
    return Batch.objects.get(table=COURSE_BLOCKS.name)


@pytest.mark.clickhouse_server
@pytest.mark.parametrize("fault", ["answer_held_past_timeout", "connection_closed_after_commit"])
def test_a_lost_acknowledgement_leaves_only_exact_duplicates_on_the_old_server(
    fault, server_clickhouse, fault_proxy, fast_retries, settings
):
    backend = server_clickhouse  # talks to the server directly, not through the proxy
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(
        settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG, url=fault_proxy.url, timeout_secs=READ_TIMEOUT
    )
    fault_proxy.match = course_blocks_insert
    if fault == "answer_held_past_timeout":
        fault_proxy.delay_response(HOLD)
    else:
        fault_proxy.drop(after_commit=True)
    snapshots = [CourseSnapshotFactory(course__blocks=20) for _ in range(3)]

    result = drain()
    assert (result.batches_sent, result.batches_retrying) == (1, 1), result  # course_overviews went through
    batch = blocks_batch()
    assert (batch.status, batch.attempts) == (Batch.Status.RETRY, 1)
    assert batch.next_attempt_at is not None and batch.http_status is None and batch.error_code is None
    if fault == "answer_held_past_timeout":
        assert f"did not answer the INSERT of {batch.row_count} rows" in batch.last_error
        assert f"timeout_secs={READ_TIMEOUT}s" in batch.last_error
    else:  # it was reached, and it answered: only the answer was lost
        assert "broke while waiting for the answer" in batch.last_error
        assert "may or may not have been applied" in batch.last_error
    (exchange,) = fault_proxy.matched_exchanges()
    assert exchange.answered is not None  # ClickHouse answered: it had committed the batch
    assert exchange.dropped == (fault == "connection_closed_after_commit")
    assert ch_count(backend, COURSE_BLOCKS.name) == batch.row_count == queued_rows(COURSE_BLOCKS.name)
    assert OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING, table="course_relationships").exists()
    token, first_error = batch.token, batch.last_error

    fault_proxy.pass_through()
    drain_everything(timeout=30, poll_interval=0.1)

    assert_all_sent()
    batch.refresh_from_db()
    assert (batch.attempts, batch.token) == (2, token)
    assert set(Batch.objects.exclude(pk=batch.pk).values_list("attempts", flat=True)) == {1}
    figures, copies = assert_every_row_at_least_once_and_duplicates_exact(backend)
    queued_blocks = queued_rows(COURSE_BLOCKS.name)
    assert figures[COURSE_BLOCKS.name] == (queued_blocks, 2 * queued_blocks, queued_blocks)
    assert copies[COURSE_BLOCKS.name] == {2: queued_blocks}  # every row of the resent batch twice, exactly
    for table in TABLES:
        if table is not COURSE_BLOCKS:
            assert copies[table.name] == {1: queued_rows(table.name)}
    assert len(fault_proxy.matched_exchanges()) == 2
    report(
        f"timeout_after_commit[18.16, {fault}]",
        snapshots=len(snapshots),
        **row_figures(figures),
        resent_batch_rows=batch.row_count,
        resent_batch_attempts=batch.attempts,
        first_error=first_error[:90] + "...",
    )


@pytest.mark.chdb
def test_a_lost_acknowledgement_leaves_no_duplicate_where_the_engine_deduplicates(
    chdb_clickhouse, fast_retries, monkeypatch
):
    backend = chdb_clickhouse
    real_insert = ChdbBackend.insert
    sends = []

    def insert_then_lose_the_answer(self, table, payload, *, rows, dedup_token=None, encoding=""):
        outcome = real_insert(self, table, payload, rows=rows, dedup_token=dedup_token, encoding=encoding)
        if table.name == COURSE_BLOCKS.name:
            sends.append((dedup_token, hashlib.sha256(payload).hexdigest(), outcome.written_rows))
            if len(sends) == 1:
                raise ClickHouseUnavailable(
                    f"ClickHouse at {self.path} did not answer the INSERT of {rows} rows into {table.name} within "
                    "timeout_secs=1s; it may or may not have been applied"
                )
        return outcome

    monkeypatch.setattr(ChdbBackend, "insert", insert_then_lose_the_answer)
    snapshots = [CourseSnapshotFactory(course__blocks=20) for _ in range(3)]

    result = drain()
    assert (result.batches_sent, result.batches_retrying) == (1, 1), result
    batch = blocks_batch()
    assert (batch.status, batch.attempts) == (Batch.Status.RETRY, 1) and "may or may not" in batch.last_error
    assert ch_count(backend, COURSE_BLOCKS.name) == batch.row_count == queued_rows(COURSE_BLOCKS.name)

    drain_everything(timeout=30, poll_interval=0.1)

    assert_all_sent()
    batch.refresh_from_db()
    assert batch.attempts == 2
    (first, second) = sends
    assert first[:2] == second[:2]  # the same bytes under the same token
    assert first[0] == f"clickhouse_outbox-{batch.token}"
    figures = assert_every_row_exactly_once(backend)
    assert ch_key_counts(backend, COURSE_BLOCKS.name).keys() == queued_keys(COURSE_BLOCKS.name).keys()
    report(
        "timeout_after_commit[chdb, same batch resent with its token]",
        snapshots=len(snapshots),
        **row_figures(figures),
        resent_batch_rows=batch.row_count,
        resent_batch_attempts=batch.attempts,
        written_rows_first_send=first[2],
        written_rows_resend=second[2],
    )
