"""
--drain on the dumping commands (`outbox_requeue`, `dump_data_to_clickhouse`,
`dump_courses_to_clickhouse`): a thread of the command sends the chunks as the dump job
queues them (`outbox.drain.drain_alongside`), then waits for the last; rows it could not
deliver stay in the outbox, and the exit status says so. The drain thread has its own
database connection, so these tests commit (transaction=True).
"""

import io
import re
import time
import uuid

import pytest
from django.core.management import CommandError, call_command

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.dumps import ranges
from clickhouse_outbox.dumps.jobs import start_job
from clickhouse_outbox.models import Batch, DumpJob, OutboxEntry
from clickhouse_outbox.outbox import registry
from clickhouse_outbox.outbox.drain import ALONGSIDE_IDLE, drain_alongside
from tests.factories import CourseSnapshotFactory
from tests.learners import RANGE_COURSES, site_before_install
from tests.processes import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def count(backend, table):
    return int(backend.query(f"SELECT count() AS n FROM {qualified_name(backend.database, table)}")[0]["n"])


def test_what_is_queued_is_sent_while_the_work_goes_on(clickhouse):
    """The work waits for its first course to be sent before it queues the second: only a drain beside it can."""
    def work():
        CourseSnapshotFactory(course__blocks=6)  # committed: no transaction is open here
        deadline = time.monotonic() + 30
        while not Batch.objects.filter(status=Batch.Status.SENT).exists():
            assert time.monotonic() < deadline, "nothing was sent while the work went on"
            time.sleep(0.05)
        CourseSnapshotFactory(course__blocks=4)
        return "queued both"

    outcome, result, left = drain_alongside(work, timeout=30)

    assert outcome == "queued both"
    assert result.ok and not left["pending_entries"] and not left["open_batches"]
    assert result.rows_sent == sum(OutboxEntry.objects.values_list("row_count", flat=True))
    assert count(clickhouse, "course_overviews") == 2


def test_a_failing_work_stops_the_drain_and_its_error_goes_on(clickhouse):
    def work():
        raise RuntimeError("the source is gone")

    with pytest.raises(RuntimeError, match="the source is gone"):
        drain_alongside(work, timeout=30)


def test_outbox_requeue_all_with_drain_delivers_every_learner_row(clickhouse, settings):
    settings.CLICKHOUSE_OUTBOX_BACKFILL_CHUNK_ROWS = 4  # several chunks, sent as they come
    users = site_before_install(9)
    enrollments = sum(len(RANGE_COURSES[: 1 + index % 3]) for index in range(len(users)))

    out, _ = run("outbox_requeue", "--all", "--producer", "user_profile", "--producer", "course_enrollment",
                 "--producer", "external_id", "--drain", "--timeout", "60")

    assert "done:" in out and re.search(rf"Drained: {Batch.objects.count()} batch(es)? \(\d+ rows\) sent\.", out), out
    assert (count(clickhouse, "user_profile"), count(clickhouse, "external_id"),
            count(clickhouse, "course_enrollment")) == (9, 9, enrollments)
    assert not OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING).exists()


def test_dump_data_to_clickhouse_with_drain_sends_one_model(clickhouse, settings):
    settings.CLICKHOUSE_OUTBOX_BACKFILL_CHUNK_ROWS = 2
    site_before_install(5)

    out, _ = run("dump_data_to_clickhouse", "--object", "user_profile", "--drain")

    assert re.search(r"Drained: \d batch(es)? \(5 rows\) sent\.", out), out
    assert count(clickhouse, "user_profile") == 5 and count(clickhouse, "course_enrollment") == 0


def test_a_table_a_dump_fills_is_sent_a_full_batch_at_a_time(clickhouse, settings):
    """
    A chunk of one profile at a time, with time between them for the drain to look (and, before
    ADR 0016's hold, send each alone): it sends batches of three, the last once the table is done.
    """
    settings.CLICKHOUSE_OUTBOX_BATCH_ROWS = 3
    site_before_install(5)
    job = start_job(DumpJob.Scope.ALL, origin="test", producers=["user_profile"])
    DumpJob.objects.filter(pk=job.pk).update(status=DumpJob.Status.RUNNING)
    producer = registry.get("user_profile")
    ranges.add_cursors(job, {"user_profile": producer}, ["user_profile"])

    def work():
        owner = uuid.uuid4()
        cursor = ranges.claim_cursor(job, owner)
        while ranges.take_range(cursor, producer, owner, 1):
            time.sleep(ALONGSIDE_IDLE * 2)

    _, result, left = drain_alongside(work, timeout=30)

    assert result.ok and not left["pending_entries"]
    assert list(Batch.objects.filter(table="user_profile").order_by("id").values_list("row_count", flat=True)) == [3, 2]
    assert count(clickhouse, "user_profile") == 5


def test_dump_data_to_clickhouse_with_drain_sends_several_models_of_one_job(clickhouse, settings):
    settings.CLICKHOUSE_OUTBOX_BACKFILL_CHUNK_ROWS = 2
    users = site_before_install(5)
    enrollments = sum(len(RANGE_COURSES[: 1 + index % 3]) for index in range(len(users)))

    out, _ = run("dump_data_to_clickhouse", "--object", "user_profile", "--object", "external_id",
                 "--object", "course_enrollment", "--drain")

    assert re.search(rf"Drained: \d+ batch(es)? \({10 + enrollments} rows\) sent\.", out), out
    assert (count(clickhouse, "user_profile"), count(clickhouse, "external_id"),
            count(clickhouse, "course_enrollment")) == (5, 5, enrollments)


def test_rows_clickhouse_did_not_take_stay_queued_and_the_command_says_so(settings):
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = {
        "url": f"http://127.0.0.1:{free_port()}", "username": "default", "password": "", "database": "event_sink",
        "timeout_secs": 2, "connect_timeout_secs": 1,
    }
    site_before_install(3)

    with pytest.raises(CommandError, match=r"Not every row was delivered within 1s"):
        out, err = io.StringIO(), io.StringIO()
        try:
            call_command("outbox_requeue", "--all", "--producer", "user_profile", "--drain", "--timeout", "1",
                         stdout=out, stderr=err)
        finally:
            assert "Dump job" in out.getvalue() and "done: 3 of 3" in out.getvalue()
            assert "Rows are still waiting after 1s: " in err.getvalue()

    kept = OutboxEntry.objects.filter(table="user_profile")
    assert sum(kept.values_list("row_count", flat=True)) == 3
    assert not kept.filter(batch__status=Batch.Status.SENT).exists()
