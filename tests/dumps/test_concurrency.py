"""
Workers on one dump job at the same time, on a database that locks for real (committed
transactions, a SQLite file, MariaDB, PostgreSQL): owners claiming at once, two threads
running the same job, two `manage.py outbox_requeue --all-courses` processes sharing it,
two staff starting a dump at the same instant, and a course taken while another connection
commits. Each course ends done once, with one snapshot, whoever took it.

Overlap is made certain, not hoped for: barriers (threads) and a gate (processes, see
gated.py) hold every worker until all of them are in.
"""

import sqlite3
import threading
import time
import uuid
from collections import Counter

import pytest
from django.db import connection, transaction

from clickhouse_outbox.db import retry_lock_conflicts
from clickhouse_outbox.dumps.jobs import DumpAlreadyActive, start_job
from clickhouse_outbox.dumps.run import Producers, claim_items, plan, run_job, take_chunk
from clickhouse_outbox.models import DumpJob, DumpJobItem, Snapshot
from clickhouse_outbox.producers.course_structure import take_course_snapshot
from tests.dumps.helpers import add_courses, course_rows, dump_snapshots_per_course, wait_until
from tests.factories import MemorySource, as_courses, with_source
from tests.processes import manage, project_env

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 60
DONE = DumpJobItem.Status.DONE


class Worker(threading.Thread):
    """Runs `work` on a database connection of its own; keeps its result or error for the test."""

    def __init__(self, work):
        super().__init__(daemon=True)
        self.work = work
        self.result, self.error = None, None

    def run(self):
        try:
            self.result = self.work()
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            self.error = exc
        finally:
            connection.close()


def run_all(workers):
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(WAIT)
    errors = [worker.error for worker in workers if worker.error is not None]
    if errors:
        raise errors[0]
    assert not any(worker.is_alive() for worker in workers), "a worker thread is stuck"
    return [worker.result for worker in workers]


def test_owners_claiming_at_the_same_instant_never_get_the_same_course():
    owners, chunk, courses = 4, 3, 60
    job = start_job(DumpJob.Scope.SELECTED, origin="test",
                    subjects=as_courses([f"course-v1:Race+C{n:03d}+R1" for n in range(courses)]))
    assert plan(job, with_source(MemorySource())) is True
    barrier = threading.Barrier(owners, timeout=WAIT)
    claimed_this_round = Counter()
    rounds = Counter()

    def claimer():
        owner, mine, round_number = uuid.uuid4(), [], 0
        while True:
            round_number += 1
            barrier.wait()  # everyone claims at once, every round
            rows = retry_lock_conflicts(claim_items, job, owner, Producers(), chunk)
            mine.extend(row.id for row in rows)
            claimed_this_round[round_number] += len(rows)
            barrier.wait()
            if not claimed_this_round[round_number]:
                rounds["rounds"] = round_number
                return owner, mine

    results = run_all([Worker(claimer) for _ in range(owners)])

    every_id = set(DumpJobItem.objects.filter(job=job).values_list("id", flat=True))
    claimed = Counter(row_id for _, mine in results for row_id in mine)
    assert set(claimed) == every_id
    assert set(claimed.values()) == {1}, "a course was given to two owners"
    holder = dict(DumpJobItem.objects.filter(job=job).values_list("id", "lease_owner"))
    for owner, mine in results:
        assert {holder[row_id] for row_id in mine} <= {owner}
    print(f"{owners} owners claimed {courses} courses in {rounds['rounds'] - 1} rounds: "
          f"{sorted(len(mine) for _, mine in results)} each")


def test_two_threads_running_one_job_take_each_course_once(olx_source, tmp_path):
    keys = add_courses(olx_source, tmp_path / "exports", 20, blocks=30)
    job = start_job(DumpJob.Scope.ALL, origin="test")
    met = threading.Barrier(2, timeout=WAIT)
    calls = Counter()

    def worker():
        outcomes = []

        def on_course(outcome):
            outcomes.append(outcome)
            if len(outcomes) == 1:
                met.wait()  # both hold a claimed chunk now: neither has taken all of its own yet

        # As the command and the task do: run again while the job is active (run_job returns when
        # it finds nothing to claim, e.g. while the other thread holds the last courses).
        try:
            current = DumpJob.objects.get(pk=job.pk)
            while current.active:
                current = run_job(current, producers=with_source(olx_source), chunk_size=2, on_item=on_course)
                calls[threading.get_ident()] += 1
                if current.active:
                    time.sleep(0.02)
        except BaseException:
            met.abort()  # the other thread is not left waiting for this one
            raise
        return outcomes

    results = run_all([Worker(worker), Worker(worker)])

    job.refresh_from_db()
    assert (job.status, job.active) == (DumpJob.Status.DONE, None)
    taken = [[outcome.subject for outcome in outcomes if outcome.status == DONE] for outcomes in results]
    assert all(taken), f"a thread took nothing: {taken}"
    assert sorted(taken[0] + taken[1]) == keys, "a course was taken twice, or not at all"
    assert [outcome for outcomes in results for outcome in outcomes if outcome.status != DONE] == []
    assert dump_snapshots_per_course() == dict.fromkeys(keys, 1)
    rows = course_rows(job)
    assert {status for status, _, _ in rows.values()} == {DONE}
    assert len({snapshot_id for _, snapshot_id, _ in rows.values()}) == len(keys)
    print(f"courses taken per thread: {[len(one) for one in taken]}; run_job calls per thread: "
          f"{sorted(calls.values())}")


def test_a_course_is_taken_while_another_connection_is_committing_a_write(olx_source, tmp_path):
    """
    A dump worker takes a course while a publish (another process; here a thread) commits
    its own write transaction: the worker waits for it, as drainers wait for each other, and
    the course is queued. The publish is made to commit exactly when the worker's
    transaction, having read, writes for the first time (or begins, where a transaction
    begins with the write lock). On SQLite a transaction that has read and then writes
    while another connection is committing is refused at once ("database is locked"), not
    after the busy timeout: this fails there today.
    """
    keys = add_courses(olx_source, tmp_path / "exports", 2)
    job = start_job(DumpJob.Scope.SELECTED, origin="test", subjects=as_courses(keys[:1]))
    plan(job, with_source(olx_source))
    (row,) = claim_items(job, uuid.uuid4(), Producers(), 1)
    holding, commit = threading.Event(), threading.Event()

    def publish():
        with transaction.atomic():
            take_course_snapshot(keys[1], "published", source=olx_source)
            holding.set()
            assert commit.wait(WAIT)

    publisher = Worker(publish)

    def committing():
        """The publish has committed, or (SQLite) is waiting to: then no new reader may start."""
        if not publisher.is_alive():
            return True
        if connection.vendor != "sqlite":
            return False
        probe = sqlite3.connect(connection.settings_dict["NAME"], timeout=0)
        try:
            probe.execute("SELECT count(*) FROM django_migrations").fetchone()
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            probe.close()

    def commit_the_publish_first(execute, sql, params, many, context):
        verb = sql.lstrip().split(None, 1)[0].upper()
        first_write = connection.in_atomic_block and verb in ("INSERT", "UPDATE", "DELETE")
        if not commit.is_set() and (first_write or sql.upper().startswith(("BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"))):
            commit.set()
            wait_until(committing, "the publish to commit, or to wait for this transaction's read lock")
        return execute(sql, params, many, context)

    publisher.start()
    try:
        assert holding.wait(WAIT)
        with connection.execute_wrapper(commit_the_publish_first):
            outcome = take_chunk([row], row.lease_owner, Producers(with_source(olx_source)))[0]
    finally:
        commit.set()
        publisher.join(WAIT)
    assert publisher.error is None
    assert (outcome.status, outcome.error) == (DONE, "")
    assert dump_snapshots_per_course() == {keys[0]: 1}
    assert Snapshot.objects.filter(subject=keys[1], reason="published").count() == 1
    assert not Snapshot.objects.filter(status=Snapshot.Status.FAILED).exists()


def test_two_staff_starting_a_dump_at_the_same_instant_get_one_job():
    barrier = threading.Barrier(2, timeout=WAIT)

    def start():
        barrier.wait()
        try:
            return start_job(DumpJob.Scope.ALL, origin="admin")
        except DumpAlreadyActive as exc:
            return exc

    results = run_all([Worker(start), Worker(start)])

    jobs = [result for result in results if isinstance(result, DumpJob)]
    refused = [result for result in results if isinstance(result, DumpAlreadyActive)]
    assert len(jobs) == 1 and len(refused) == 1, results
    assert refused[0].job == jobs[0]
    assert str(refused[0]).startswith(f"Dump job {jobs[0].pk} (all courses, queued) is under way")
    assert list(DumpJob.objects.all()) == jobs


def test_two_outbox_requeue_all_courses_processes_share_one_job_and_take_each_course_once(
    olx_dir, olx_source, tmp_path, clickhouse_server_config
):
    keys = add_courses(olx_source, tmp_path / "exports", 30, blocks=30)
    gate = tmp_path / "gate"
    gate.mkdir()
    env = project_env(
        dict(clickhouse_server_config, database="unused_by_this_test"),
        OLX_COURSES_DIR=olx_dir,
        CLICKHOUSE_OUTBOX_COURSE_SOURCE="tests.dumps.gated.GatedOlxSource",
        CLICKHOUSE_OUTBOX_DUMP_CHUNK_COURSES=2,
        DUMP_TEST_GATE=gate,
        DUMP_TEST_READ_SECS=0.1,  # 3 s for one process alone: the other has time to join in
        OUTBOX_LOG_LEVEL="WARNING",
    )
    processes = [manage("outbox_requeue", "--all-courses", env=env) for _ in range(2)]
    try:
        def alive():
            for process in processes:
                if process.poll() is not None:
                    raise AssertionError(f"outbox_requeue exited with {process.returncode}:\n{process.stdout.read()}")

        # Both have started or joined the job (it cannot end: neither has read a course yet).
        wait_until(lambda: len(list(gate.glob("ready-*"))) == 2, "both processes at the gate", timeout=WAIT,
                   while_alive=alive)
        (gate / "go").touch()
        outputs = []
        for process in processes:
            output, _ = process.communicate(timeout=WAIT)
            outputs.append(output)
            assert process.returncode == 0, output
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)

    job = DumpJob.objects.get()  # one job: the second process joined the first's
    assert (job.status, job.active, job.origin) == (DumpJob.Status.DONE, None, "outbox_requeue")
    joined = [output for output in outputs if "is already under way" in output]
    assert len(joined) == 1 and "working on it with the others" in joined[0], outputs
    assert all(f"Dump job {job.pk} done: 30 of 30 courses (30 queued)." in output for output in outputs), outputs

    reads = [path.read_text().split() for path in sorted(gate.glob("read-*"))]
    assert len(reads) == 2 and all(reads), f"a process read no course: {[len(one) for one in reads]}"
    assert sorted(reads[0] + reads[1]) == keys, "a course was read by both processes, or by neither"
    assert dump_snapshots_per_course() == dict.fromkeys(keys, 1)
    rows = course_rows(job)
    assert {status for status, _, _ in rows.values()} == {DONE} and len(rows) == len(keys)
    assert set(Snapshot.objects.values_list("status", flat=True)) == {Snapshot.Status.QUEUED}
    print(f"courses read per process: {[len(one) for one in reads]}")
