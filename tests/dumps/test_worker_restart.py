"""
Fault test: a celery worker SIGKILLed in the middle of a dump job, and the job resumed.

A real `celery worker` (solo pool) and `celery beat` (django-celery-beat's scheduler,
sending the drain task every second), as in tests/tasks/test_celery_beat.py, work on a job of
COURSES generated OLX courses in chunks of CHUNK courses (settings in their environment as
CLICKHOUSE_OUTBOX_* JSON values). This process starts the job (start_job + dispatch) and
SIGKILLs the worker once a random number of courses (from the seed) is done: no finally
block, no rollback by the process itself. A new worker is started. Nobody sends the job
again but the beat's drain task (resume_stalled). Twice:

* freed by the lock: the workers hold their database locks (outbox.liveness) and the lease
  is the default 300 s. The kill is made while the worker holds a chunk (it is stopped,
  looked at, and killed only then). The beat's drain task finds its lock gone, gives its
  courses back and sends the job again at once: the job ends before the dead worker's
  lease would have.
* freed by the lease: locks off, 3-second leases, the kill whatever the worker is doing;
  the beat sends the job again once the dead worker's leases have run out.

The job must end done with every course queued exactly once: one DumpJobItem done and
one snapshot with reason "dump" per course. A course the dead worker had claimed but not
committed has no snapshot from it (its transaction died with it), and exactly one after.
Then the drain (in the new worker) delivers every queued row to ClickHouse exactly once
(the kill hits the dump task: the solo worker runs no drain meanwhile).

The worker and beat use the test database itself (`transaction=True`) and the real
ClickHouse test server (a chdb store can be open in one process only). DUMPS_SEED
reproduces a run's kill point and courses.
"""

import os
import random
import signal
import sqlite3
import time
from collections import Counter
from contextlib import closing

import pytest
from django.core.cache import cache
from django.db import connection

from clickhouse_outbox.dumps.dispatch import dispatch
from clickhouse_outbox.dumps.jobs import job_progress, start_job
from clickhouse_outbox.dumps.run import REASON
from clickhouse_outbox.models import Batch, DumpJob, DumpJobItem, OutboxEntry, Snapshot
from clickhouse_outbox.tasks import DUMP_TASK, LOCK_KEY
from tests.dumps.helpers import add_courses, dump_snapshots_per_course, wait_until
from tests.faults.helpers import assert_every_row_exactly_once
from tests.processes import celery_processes, project_env

pytestmark = [pytest.mark.slow, pytest.mark.clickhouse_server, pytest.mark.django_db(transaction=True)]

COURSES = 30
BLOCKS = 400  # a course takes tens of milliseconds: the whole job takes a single worker a few seconds
CHUNK = 3
WAIT = 120
#: How the dead worker's courses are freed: its lock (with the default lease), or the lease alone (locks off).
FREED_BY = {"lock": {"CLICKHOUSE_OUTBOX_LEASE_SECS": 300},
            "lease": {"CLICKHOUSE_OUTBOX_LEASE_SECS": 3, "CLICKHOUSE_OUTBOX_CLAIM_LOCKS": "false"}}
SEED = int(os.environ.get("DUMPS_SEED", random.randrange(1_000_000)))


def outbox_empty():
    return not OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING).exists() and (
        not Batch.objects.exclude(status=Batch.Status.SENT).exists()
    )


def course_statuses(job):
    return Counter(DumpJobItem.objects.filter(job=job).values_list("status", flat=True))


def holds_a_chunk(job):
    """
    Whether the job has claimed courses, asked without waiting: on SQLite the stopped worker
    may hold the write lock (then the answer is no, and it runs on).
    """
    if connection.vendor != "sqlite":
        return DumpJobItem.objects.filter(job=job, status=DumpJobItem.Status.CLAIMED).exists()
    with closing(sqlite3.connect(connection.settings_dict["NAME"], timeout=0.05)) as database:
        try:
            return database.execute(
                f"SELECT 1 FROM {DumpJobItem._meta.db_table} WHERE job_id = ? AND status = ? LIMIT 1",  # noqa: S608
                [job.pk, DumpJobItem.Status.CLAIMED],
            ).fetchone() is not None
        except sqlite3.OperationalError:
            return False


def kill_holding_a_chunk(process, job, timeout=WAIT):
    """SIGKILL the worker at an instant it holds claimed courses: stopped, looked at, killed then (else run on)."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            os.kill(process.pid, signal.SIGSTOP)
            if holds_a_chunk(job):
                break
            os.kill(process.pid, signal.SIGCONT)
            assert time.monotonic() < deadline, "the worker never held a chunk"
            time.sleep(0.001)
    finally:
        process.kill()


@pytest.mark.parametrize("freed_by", sorted(FREED_BY))
def test_a_dump_whose_worker_was_killed_is_resumed_by_the_beat_and_queues_each_course_once(
    server_clickhouse, clickhouse_server_config, olx_dir, olx_source, tmp_path, celery_broker, freed_by
):
    rng = random.Random(SEED)
    # Not a multiple of the chunk: the kill then mostly lands inside a chunk, with courses claimed
    # (and often one being read or written) rather than between two claims.
    kill_after = rng.choice([n for n in range(3, COURSES // 2 + 1) if n % CHUNK])
    print(f"\nDUMPS seed={SEED} courses={COURSES} blocks={BLOCKS} chunk={CHUNK} freed by the {freed_by} "
          f"{FREED_BY[freed_by]} kill once {kill_after} courses are done")
    keys = add_courses(olx_source, tmp_path / "exports", COURSES, blocks=BLOCKS, seed=SEED)
    config = dict(clickhouse_server_config, database=server_clickhouse.database)
    env = project_env(config, OLX_COURSES_DIR=olx_dir, OUTBOX_DRAIN_INTERVAL_SECS=1, CELERY_BROKER_URL=celery_broker,
                      CLICKHOUSE_OUTBOX_DUMP_CHUNK_COURSES=CHUNK, OUTBOX_LOG_LEVEL="INFO", **FREED_BY[freed_by])
    cache.delete(LOCK_KEY)
    with celery_processes(tmp_path, env) as processes:
        processes.start_worker("worker")
        processes.start_beat()

        job = start_job(DumpJob.Scope.ALL, origin="test")
        started = time.monotonic()
        assert dispatch(job)

        def enough_done():
            done = job_progress(job)["done"]
            return done if done >= kill_after else 0

        done_before_kill = wait_until(enough_done, f"{kill_after} courses to be done", timeout=WAIT, poll=0.01,
                                      while_alive=processes.check_alive)
        process, log = processes.running.pop("worker")
        if freed_by == "lock":
            kill_holding_a_chunk(process, job)  # SIGKILL, to the worker this test started
        else:
            process.kill()  # SIGKILL, to the worker this test started, whatever it is doing
        process.wait(timeout=30)
        log.close()
        killed_at = time.monotonic()

        at_kill = job_progress(job)
        held = list(DumpJobItem.objects.filter(job=job, status=DumpJobItem.Status.CLAIMED)
                    .values_list("subject", flat=True))
        leases_end = DumpJobItem.objects.filter(job=job, status=DumpJobItem.Status.CLAIMED).values_list(
            "lease_expires_at", flat=True)
        first_lease_end = min(leases_end, default=None)
        job.refresh_from_db()
        print(f"DUMPS killed the worker {killed_at - started:.2f} s after dispatch: seen {done_before_kill} done, "
              f"{at_kill['done']} done at the kill, {len(held)} claimed by the dead worker")
        assert job.status == DumpJob.Status.RUNNING and job.active, processes.log("worker")
        assert at_kill["done"] < COURSES, "the worker finished the job before it was killed: nothing was tested"
        assert at_kill["failed"] == 0, processes.log("worker")
        # What the dead worker held but had not committed left nothing behind.
        assert not Snapshot.objects.filter(subject__in=held).exists()
        assert sum(dump_snapshots_per_course().values()) == at_kill["done"]

        processes.start_worker("worker2")
        wait_until(lambda: DumpJob.objects.filter(pk=job.pk, active=None).exists(), "the job to end",
                   timeout=WAIT, poll=0.1, while_alive=processes.check_alive)
        resumed_in = time.monotonic() - killed_at

        job.refresh_from_db()
        assert (job.status, job.active, job.error) == (DumpJob.Status.DONE, None, "")
        assert course_statuses(job) == {DumpJobItem.Status.DONE: COURSES}
        assert job_progress(job) == {"total": COURSES, "done": COURSES, "failed": 0, "left": 0}
        assert dump_snapshots_per_course() == dict.fromkeys(keys, 1)
        snapshot_of = dict(Snapshot.objects.filter(reason=REASON).values_list("subject", "id"))
        rows = dict(DumpJobItem.objects.filter(job=job).values_list("subject", "snapshot_id"))
        assert rows == snapshot_of
        assert not Snapshot.objects.filter(status=Snapshot.Status.FAILED).exists()
        # The beat's drain task sent the job again (nothing else did: the dead worker's task was gone).
        resumed = f"dump job {job.pk} had no worker; sending it to celery again"
        assert resumed in processes.log("worker2")
        if freed_by == "lock":  # at once: its courses' 300 s lease had hardly begun
            assert held and f"a worker of dump job {job.pk} died; its subjects are given back" in processes.log("worker2")
            assert job.finished_at < first_lease_end
        assert f"Task {DUMP_TASK}[" in processes.log("worker2")
        print(f"DUMPS job done {resumed_in:.2f} s after the kill; {time.monotonic() - started:.2f} s in all")

        # And the beat's drain delivered every queued row to ClickHouse exactly once.
        wait_until(outbox_empty, "the drain to send every row", timeout=WAIT, poll=0.2,
                   while_alive=processes.check_alive)
        figures = assert_every_row_exactly_once(server_clickhouse)
        print(f"DUMPS delivered: {figures}")
