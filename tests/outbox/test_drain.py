"""
The drain against real ClickHouse: the old server (transport, outages, auth) and chdb
(current SQL, deduplication tokens).
"""

import json
import uuid
from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.clickhouse.errors import DATA_ERROR_CODES
from clickhouse_outbox.clickhouse.tables import COURSE_BLOCKS, COURSE_OVERVIEWS, COURSE_RELATIONSHIPS
from clickhouse_outbox.db import db_now
from clickhouse_outbox.models import Batch, OutboxEntry
from clickhouse_outbox.operations.requeue import retry_now
from clickhouse_outbox.outbox import claim
from clickhouse_outbox.outbox.claim import claim_batch
from clickhouse_outbox.outbox.drain import drain, drain_until_empty
from clickhouse_outbox.outbox.finalise import backoff_delay, mark_sent
from tests.factories import CourseSnapshotFactory

pytestmark = pytest.mark.django_db

TABLES = (COURSE_OVERVIEWS, COURSE_BLOCKS, COURSE_RELATIONSHIPS)


def count(backend, table, where="1"):
    return int(backend.query(f"SELECT count() AS n FROM {qualified_name(backend.database, table)} WHERE {where}")[0]["n"])


def make_due(**filters):
    Batch.objects.filter(status=Batch.Status.RETRY, **filters).update(next_attempt_at=timezone.now() - timedelta(1))


def test_batches_cross_courses_one_insert_per_table(clickhouse):
    snapshots = [CourseSnapshotFactory(course__blocks=25) for _ in range(4)]
    result = drain()
    assert result.ok and result.batches_sent == 3
    assert sorted(Batch.objects.values_list("table", flat=True)) == sorted(t.name for t in TABLES)
    assert set(Batch.objects.values_list("status", flat=True)) == {Batch.Status.SENT}
    assert result.rows_sent == sum(s.row_count for s in snapshots)
    for snapshot in snapshots:
        for table in TABLES:
            expected = snapshot.entries.filter(table=table.name).values_list("row_count", flat=True)
            assert count(clickhouse, table.name, f"dump_id = '{snapshot.dump_id}'") == sum(expected)


def test_what_lands_is_what_was_queued(clickhouse):
    snapshot = CourseSnapshotFactory(course__blocks=30)
    drain()
    queued = [
        json.loads(line)
        for entry in snapshot.entries.filter(table=COURSE_BLOCKS.name)
        for line in entry.lines().splitlines()
    ]
    landed = clickhouse.query(
        f"SELECT org, course_key, location, display_name, xblock_data_json, `order`, edited_on, "
        f"toString(dump_id) AS dump_id, time_last_dumped FROM {qualified_name(clickhouse.database, 'course_blocks')} "
        f"ORDER BY `order`"
    )
    for row in landed:
        row["order"] = int(row["order"])
    assert landed == queued


def test_batches_stop_growing_at_the_row_limit(clickhouse, settings):
    settings.CLICKHOUSE_OUTBOX_BATCH_ROWS = 10
    settings.CLICKHOUSE_OUTBOX_ENTRY_MAX_BYTES = 2048
    CourseSnapshotFactory(course__blocks=60)
    result = drain()
    assert result.ok
    blocks = Batch.objects.filter(table=COURSE_BLOCKS.name)
    assert blocks.count() > 3
    for batch in blocks:
        entries = list(batch.entries.values_list("row_count", flat=True))
        assert sum(entries) == batch.row_count
        assert batch.row_count <= 10 or len(entries) == 1
    assert count(clickhouse, "course_blocks") == sum(
        OutboxEntry.objects.filter(table="course_blocks").values_list("row_count", flat=True)
    )


def test_an_outage_keeps_every_row_and_records_the_attempt(server_clickhouse, settings):
    snapshot = CourseSnapshotFactory()
    good = dict(settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG)
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(good, url="http://127.0.0.1:9", connect_timeout_secs=1)
    before = db_now()
    result = drain()
    assert not result.ok and result.batches_retrying == 1 and result.batches_sent == 0
    (batch,) = Batch.objects.all()
    assert batch.status == Batch.Status.RETRY and batch.attempts == 1
    assert batch.next_attempt_at > before
    assert "127.0.0.1:9" in batch.last_error
    # The run stopped at the first failure: the other tables' rows are still pending, untouched.
    assert OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING).count() == 2
    # While the batch waits to retry, a server-wide failure keeps new rows pending: they
    # spend no attempts (a long outage does not use up every batch's attempts).
    for _ in range(3):
        assert drain().batches_sent == 0
    assert Batch.objects.count() == 1 and Batch.objects.get().server_error
    assert OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING).count() == 2
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = good
    make_due()
    result = drain()
    assert set(Batch.objects.values_list("status", flat=True)) == {Batch.Status.SENT}
    for table in TABLES:
        assert count(server_clickhouse, table.name) == sum(
            snapshot.entries.filter(table=table.name).values_list("row_count", flat=True)
        )
    assert Batch.objects.get(pk=batch.pk).attempts == 2


def test_a_wrong_password_loses_nothing(server_clickhouse, settings):
    CourseSnapshotFactory()
    good = dict(settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG)
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(good, password="wrong-password-xyz")
    drain()
    (batch,) = Batch.objects.all()
    assert batch.status == Batch.Status.RETRY
    assert batch.http_status in (401, 403, 500) and "wrong-password-xyz" not in batch.last_error
    assert good["username"] in batch.last_error
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = good
    make_due()
    drain()
    assert count(server_clickhouse, "course_overviews") == 1
    assert count(server_clickhouse, "course_blocks") > 0


def test_attempts_run_out_then_the_batch_fails_until_requeued(server_clickhouse, settings):
    settings.CLICKHOUSE_OUTBOX_MAX_ATTEMPTS = 3
    CourseSnapshotFactory()
    good = dict(settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG)
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(good, url="http://127.0.0.1:9", connect_timeout_secs=1)
    drain()
    batch = Batch.objects.get()
    for _ in range(2):
        make_due()
        drain(max_batches=1)
    batch.refresh_from_db()
    assert (batch.status, batch.attempts) == (Batch.Status.FAILED, 3)
    make_due()
    drain(max_batches=1)
    batch.refresh_from_db()
    assert batch.status == Batch.Status.FAILED  # nothing retries a failed batch by itself
    assert retry_now(Batch.objects.filter(pk=batch.pk)).retried == 1
    batch.refresh_from_db()
    assert (batch.status, batch.attempts, batch.attempts_left) == (Batch.Status.RETRY, 3, 3)  # history kept
    drain(max_batches=1)  # still the wrong address: one of the three new attempts is spent
    batch.refresh_from_db()
    assert (batch.status, batch.attempts, batch.attempts_left) == (Batch.Status.RETRY, 4, 2)
    assert retry_now(Batch.objects.filter(pk=batch.pk)).retried == 1  # waiting batches can be retried now too
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = good
    drain()
    batch.refresh_from_db()
    assert (batch.status, batch.attempts) == (Batch.Status.SENT, 5)
    # A sent batch keeps no error: filters on error codes list only what still failed.
    assert (batch.last_error, batch.error_code, batch.http_status, batch.server_error) == ("", None, None, False)


def test_a_dead_drainers_batch_comes_back_after_its_lease(clickhouse):
    CourseSnapshotFactory()
    dead_owner = uuid.uuid4()
    batch = claim_batch(dead_owner)  # ... and the drainer dies before sending
    assert batch.lease_expires_at > db_now()
    assert drain().batches_sent == 2  # the other tables; the leased batch is not touched
    assert Batch.objects.get(pk=batch.pk).status == Batch.Status.CLAIMED
    Batch.objects.filter(pk=batch.pk).update(lease_expires_at=F("lease_expires_at") - timedelta(days=1))
    assert drain().batches_sent == 1
    batch.refresh_from_db()
    assert (batch.status, batch.attempts) == (Batch.Status.SENT, 2)
    assert count(clickhouse, batch.table) == batch.row_count
    assert not mark_sent(batch, dead_owner)  # the dead drainer, waking up, changes nothing


def test_leases_that_keep_running_out_fail_the_batch(clickhouse, settings):
    settings.CLICKHOUSE_OUTBOX_MAX_ATTEMPTS = 2
    CourseSnapshotFactory()
    for _ in range(2):
        claim_batch(uuid.uuid4())
        Batch.objects.update(lease_expires_at=timezone.now() - timedelta(days=1))
    claim_batch(uuid.uuid4())
    first = Batch.objects.order_by("id").first()
    assert first.status == Batch.Status.FAILED and "lease ran out" in first.last_error


def test_a_rejected_row_is_isolated_and_every_other_row_delivered(clickhouse):
    snapshots = [CourseSnapshotFactory(course__blocks=20) for _ in range(3)]
    total = sum(OutboxEntry.objects.filter(table="course_blocks").values_list("row_count", flat=True))
    poisoned = snapshots[1].entries.get(table="course_blocks")
    lines = poisoned.lines().splitlines(keepends=True)
    bad = json.loads(lines[7])
    bad["dump_id"] = "not-a-uuid"
    lines[7] = (json.dumps(bad) + "\n").encode()
    OutboxEntry.objects.filter(pk=poisoned.pk).update(payload=b"".join(lines), encoding="")
    for _ in range(20):
        make_due()
        drain()
        if not Batch.objects.filter(status__in=[Batch.Status.RETRY, Batch.Status.CLAIMED]).exists():
            break
    assert count(clickhouse, "course_blocks") == total - 1
    failed = Batch.objects.get(status=Batch.Status.FAILED)
    assert failed.row_count == 1 and failed.error_code in DATA_ERROR_CODES  # 376 on current servers, 27 on 18.16
    assert "dump_id" in failed.last_error  # ClickHouse names the column it could not parse
    (entry,) = failed.entries.all()
    assert json.loads(entry.lines()) == bad
    assert count(clickhouse, "course_blocks", f"location = '{bad['location']}'") == 0


def test_a_batch_specific_failure_does_not_hold_back_the_others(clickhouse):
    """Only server-wide failures pause new claims; a table nobody registered fails alone."""
    OutboxEntry.objects.create(table="no_such_table", row_count=1, payload=b'{"a":1}\n')  # oldest: claimed first
    CourseSnapshotFactory()
    for _ in range(4):
        drain()
    assert Batch.objects.get(table="no_such_table").status == Batch.Status.RETRY
    assert not Batch.objects.get(table="no_such_table").server_error
    assert Batch.objects.filter(status=Batch.Status.SENT).count() == 3


def test_a_table_nobody_registered_waits_with_a_clear_error(clickhouse):
    snapshot = CourseSnapshotFactory()
    OutboxEntry.objects.create(snapshot=snapshot, table="no_such_table", row_count=1, payload=b'{"a":1}\n')
    for _ in range(5):
        drain()
        make_due(table="course_blocks")
    batch = Batch.objects.get(table="no_such_table")
    assert batch.status == Batch.Status.RETRY and "no_such_table" in batch.last_error


def test_resending_a_batch_leaves_no_duplicate_where_the_engine_deduplicates(chdb_clickhouse):
    CourseSnapshotFactory()
    drain()
    n = count(chdb_clickhouse, "course_blocks")
    Batch.objects.update(status=Batch.Status.RETRY, next_attempt_at=timezone.now() - timedelta(1))  # as if unconfirmed
    assert drain().batches_sent == 3
    assert count(chdb_clickhouse, "course_blocks") == n


def test_resending_a_batch_leaves_exact_duplicates_on_an_old_server(server_clickhouse):
    CourseSnapshotFactory()
    drain()
    n = count(server_clickhouse, "course_blocks")
    Batch.objects.update(status=Batch.Status.RETRY, next_attempt_at=timezone.now() - timedelta(1))
    drain()
    table = qualified_name(server_clickhouse.database, "course_blocks")
    assert count(server_clickhouse, "course_blocks") == 2 * n
    distinct = server_clickhouse.query(
        f"SELECT count() AS n FROM (SELECT DISTINCT org, course_key, location, display_name, xblock_data_json, "
        f"`order`, edited_on, dump_id, time_last_dumped FROM {table})"
    )
    assert int(distinct[0]["n"]) == n


def test_claims_by_compare_and_swap_where_skip_locked_is_missing(clickhouse, monkeypatch):
    monkeypatch.setattr(claim, "skip_locked", lambda: False)
    CourseSnapshotFactory()
    assert drain().batches_sent == 3
    assert count(clickhouse, "course_overviews") == 1


def test_backoff_grows_exponentially_with_jitter_and_a_cap(settings):
    settings.CLICKHOUSE_OUTBOX_BACKOFF_BASE_SECS = 2
    settings.CLICKHOUSE_OUTBOX_BACKOFF_MAX_SECS = 60
    for attempts, ceiling in [(1, 2), (2, 4), (3, 8), (5, 32), (6, 60), (30, 60)]:
        delays = [backoff_delay(attempts) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 10  # jittered


@pytest.mark.django_db(transaction=True)  # the threads open connections of their own: the rows must be committed
def test_a_drain_with_two_threads_sends_every_row_once(clickhouse, settings):
    settings.CLICKHOUSE_OUTBOX_BATCH_ROWS = 100  # many batches, so both threads get some
    snapshots = [CourseSnapshotFactory(course__blocks=40) for _ in range(12)]
    total, left = drain_until_empty(timeout=120, poll_interval=0.05, threads=2)
    assert not total.errors and left == {"pending_entries": 0, "open_batches": 0, "failed_batches": 0}
    assert total.rows_sent == sum(snapshot.row_count for snapshot in snapshots)
    assert set(Batch.objects.values_list("status", flat=True)) == {Batch.Status.SENT}
    assert len({batch.lease_owner for batch in Batch.objects.all()}) == 1  # None: all finalised
    for table in ("course_overviews", "course_blocks", "course_relationships"):
        distinct = clickhouse.query(
            f"SELECT count() AS n, uniqExact(dump_id, {'location' if table == 'course_blocks' else 'course_key'}"
            f"{', child_location' if table == 'course_relationships' else ''}) AS u "
            f"FROM {qualified_name(clickhouse.database, table)}"
        )[0]
        assert int(distinct["n"]) == int(distinct["u"]) == sum(
            entry.row_count for entry in OutboxEntry.objects.filter(table=table)
        )
