"""
End to end through real celery processes: a course published in this process is drained
to the real ClickHouse test server by the drain task that a real `celery beat` (with
django-celery-beat's DatabaseScheduler, fed from the project's CELERY_BEAT_SCHEDULE)
sends to a real `celery worker` over Redis. Nothing here calls the task.

The worker and beat open the test database itself (a file next to the main one for
SQLite, `test_<name>` for MariaDB/PostgreSQL), so the test commits for real
(`transaction=True`). The ClickHouse is the server, not chdb: a chdb store can be open
in only one process at a time.
"""

import time

import pytest
from django.core.cache import cache
from django.db import connection
from openedx_events.content_authoring.data import CourseData
from openedx_events.content_authoring.signals import COURSE_IMPORT_COMPLETED

from clickhouse_outbox.clickhouse.backends.base import qualified_name, quote_string
from clickhouse_outbox.dumps.dispatch import dispatch
from clickhouse_outbox.dumps.jobs import start_job
from clickhouse_outbox.models import Batch, DumpJob, OutboxEntry, Snapshot
from clickhouse_outbox.tasks import LOCK_KEY, DRAIN_TASK
from tests.dumps.helpers import wait_until
from tests.learners import site_before_install
from tests.processes import celery_processes, project_env

DEADLINE_SECS = 60

#: The sample course's rows per table: 1 overview; 46 tree blocks + 6 detached blocks;
#: 45 parent -> child edges (see clickhouse_outbox.sources.olx.SAMPLE_COURSE_DIR).
SAMPLE_ROWS = {"course_overviews": 1, "course_blocks": 52, "course_relationships": 45}


def clickhouse_counts(backend, course_key, dump_id):
    counts = {}
    for table in SAMPLE_ROWS:
        rows = backend.query(
            f"SELECT count() AS n FROM {qualified_name(backend.database, table)} "
            f"WHERE course_key = {quote_string(course_key)} AND toString(dump_id) = {quote_string(dump_id)}"
        )
        counts[table] = int(rows[0]["n"])
    return counts


def count(backend, table):
    return int(backend.query(f"SELECT count() AS n FROM {qualified_name(backend.database, table)}")[0]["n"])


def outbox_counts(snapshot):
    counts = {}
    for table, row_count in OutboxEntry.objects.filter(snapshot=snapshot).values_list("table", "row_count"):
        counts[table] = counts.get(table, 0) + row_count
    return counts


@pytest.mark.slow
@pytest.mark.clickhouse_server
@pytest.mark.django_db(transaction=True)
def test_beat_and_worker_drain_a_published_course(server_clickhouse, clickhouse_server_config, sample_course_key,
                                                  olx_dir, tmp_path, celery_broker):
    from django_celery_beat.models import PeriodicTask

    config = dict(clickhouse_server_config, database=server_clickhouse.database)
    env = project_env(config, OLX_COURSES_DIR=olx_dir, OUTBOX_DRAIN_INTERVAL_SECS=1, CELERY_BROKER_URL=celery_broker,
                      OUTBOX_LOG_LEVEL="INFO")
    started = time.monotonic()
    cache.delete(LOCK_KEY)
    with celery_processes(tmp_path, env) as processes:
        processes.start_worker()
        processes.start_beat()
        # Beat took its entry from the project's settings into the database scheduler.
        entry = PeriodicTask.objects.get(name="clickhouse_outbox.drain")
        assert entry.task == DRAIN_TASK
        assert (entry.interval.every, entry.interval.period) == (1, "seconds")

        # Publish (an import), committed: this test runs in autocommit mode.
        COURSE_IMPORT_COMPLETED.send_event(course=CourseData(course_key=sample_course_key))
        assert not connection.in_atomic_block
        snapshot = Snapshot.objects.get(subject=str(sample_course_key))
        assert snapshot.status == Snapshot.Status.QUEUED
        expected = outbox_counts(snapshot)
        assert expected == SAMPLE_ROWS

        # Wait for beat -> worker -> drain -> ClickHouse; never call the task here.
        deadline = time.monotonic() + DEADLINE_SECS
        counts = {}
        while time.monotonic() < deadline:
            processes.check_alive()
            counts = clickhouse_counts(server_clickhouse, str(sample_course_key), str(snapshot.dump_id))
            if counts == expected and not Batch.objects.exclude(status=Batch.Status.SENT).exists() and (
                not OutboxEntry.objects.filter(snapshot=snapshot, status=OutboxEntry.Status.PENDING).exists()
            ):
                break
            time.sleep(0.5)
        assert counts == expected, f"ClickHouse has {counts} after {DEADLINE_SECS} s, expected {expected}"

        batches = list(Batch.objects.filter(entries__snapshot=snapshot).distinct())
        assert {batch.status for batch in batches} == {Batch.Status.SENT}
        assert all(batch.sent_at is not None and batch.lease_owner is None for batch in batches)
        sent_per_table = {}
        for batch in batches:
            sent_per_table[batch.table] = sent_per_table.get(batch.table, 0) + batch.row_count
        assert sent_per_table == expected
        assert set(OutboxEntry.objects.filter(snapshot=snapshot).values_list("status", flat=True)) == {
            OutboxEntry.Status.BATCHED
        }
        # And it was the worker, running the task beat sent, that did it.
        processes.wait_for_log("worker", "clickhouse_outbox: sent batch", timeout=10)
        worker_log = processes.log("worker")
        assert f"Task {DRAIN_TASK}[" in worker_log and "received" in worker_log
        assert "succeeded" in worker_log
        print(f"drained through beat + worker in {time.monotonic() - started:.1f} s")


@pytest.mark.slow
@pytest.mark.clickhouse_server
@pytest.mark.django_db(transaction=True)
def test_a_dump_jobs_rows_go_when_it_is_done_without_waiting_for_beat(server_clickhouse, clickhouse_server_config,
                                                                       tmp_path, celery_broker):
    """
    A dump job started as the admin's form starts one (start_job, then dispatch) and a worker
    with no beat: the task that finishes the job sends the drain task, which delivers its rows.
    """
    site_before_install(5)
    config = dict(clickhouse_server_config, database=server_clickhouse.database)
    env = project_env(config, CELERY_BROKER_URL=celery_broker, OUTBOX_LOG_LEVEL="INFO")
    cache.delete(LOCK_KEY)
    with celery_processes(tmp_path, env) as processes:
        processes.start_worker()
        job = start_job(DumpJob.Scope.ALL, origin="test", producers=["user_profile", "external_id"])
        assert dispatch(job)
        wait_until(lambda: not Batch.objects.exclude(status=Batch.Status.SENT).exists() and not OutboxEntry.objects.filter(
            status=OutboxEntry.Status.PENDING).exists() and DumpJob.objects.filter(pk=job.pk, active=None).exists(),
            "the job's rows to be sent", timeout=DEADLINE_SECS, poll=0.2, while_alive=processes.check_alive)
        assert [count(server_clickhouse, table) for table in ("user_profile", "external_id")] == [5, 5]
        worker_log = processes.log("worker")
        assert f"Task {DRAIN_TASK}[" in worker_log  # the drain ran in the worker, sent by the dump task
