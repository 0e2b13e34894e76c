"""
Handing dump jobs to celery, on a real database (the broker is replaced by a recorder; the
real worker and beat are in test_worker_restart.py): the periodic pick-up of a job nobody
works on (resume_stalled), and the dump task sending itself again while courses are left.

Committed transactions (`transaction=True`): the pick-up compares times on the database
clock, which PostgreSQL freezes inside a transaction.
"""

import uuid

import pytest

from clickhouse_outbox import conf, tasks
from clickhouse_outbox.db import UtcNow
from clickhouse_outbox.dumps import dispatch as dispatching
from clickhouse_outbox.dumps.dispatch import resume_stalled
from clickhouse_outbox.dumps.jobs import cancel_job, start_job
from clickhouse_outbox.dumps.run import Producers, claim_items, plan
from clickhouse_outbox.models import DumpJob, DumpJobItem
from clickhouse_outbox.outbox import liveness
from tests.claim_locks import end_lock
from tests.dumps.helpers import add_courses, dump_snapshots_per_course, statuses, wait_until
from tests.factories import with_source

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sent(monkeypatch):
    """The jobs handed to celery, in order, and ("drain", job) for a drain task sent (nothing reaches a broker)."""
    jobs = []

    def record(job):
        DumpJob.objects.filter(pk=job.pk).update(dispatched_at=UtcNow())  # as dispatch() does
        jobs.append(job.pk)
        return True

    monkeypatch.setattr(dispatching, "dispatch", record)
    monkeypatch.setattr(tasks, "dispatch", record)
    monkeypatch.setattr(tasks, "drain_soon", lambda job: jobs.append(("drain", job.pk)))
    return jobs


def test_a_job_never_sent_to_celery_is_sent_by_the_next_pick_up_once(sent):
    job = start_job(DumpJob.Scope.ALL, origin="test")
    assert [resumed.pk for resumed in resume_stalled()] == [job.pk]
    assert resume_stalled() == []  # just sent: not again within a lease period
    assert sent == [job.pk]


def test_a_job_a_worker_holds_is_not_sent(settings, sent, olx_source, tmp_path):
    """`outbox_requeue --all-courses` works on a job celery never had: its live leases say so."""
    add_courses(olx_source, tmp_path / "exports", 3)
    job = start_job(DumpJob.Scope.ALL, origin="outbox_requeue")
    plan(job, with_source(olx_source))
    claim_items(job, uuid.uuid4(), Producers(), 2)
    assert resume_stalled() == []
    assert sent == []


def test_a_job_whose_worker_died_is_sent_again_once_its_leases_and_the_last_send_are_old(settings, sent,
                                                                                        olx_source, tmp_path):
    """
    The dead worker's job was sent (dispatched_at, set by the database clock) and its
    claimed courses hold a live lease: nothing is sent. Once the lease has run out and
    the send is older than a lease period, one pick-up sends it, and only one.
    """
    add_courses(olx_source, tmp_path / "exports", 3)
    job = start_job(DumpJob.Scope.ALL, origin="test")
    plan(job, with_source(olx_source))
    DumpJob.objects.filter(pk=job.pk).update(dispatched_at=UtcNow())  # what dispatch() records
    claimed = claim_items(job, uuid.uuid4(), Producers(), 2)
    settings.CLICKHOUSE_OUTBOX_LEASE_SECS = 1
    assert resume_stalled() == []  # a worker holds courses on a live (300 s) lease, and it was just sent

    # The worker is dead: its lease runs out (made to, rather than waited for 300 s).
    DumpJobItem.objects.filter(id__in=[row.id for row in claimed]).update(lease_expires_at=UtcNow())
    resumed = wait_until(resume_stalled, "the pick-up to send the job again (the last send is 1 s old)",
                         timeout=15, poll=0.1)
    assert [job.pk for job in resumed] == [job.pk]
    assert resume_stalled() == []
    assert sent == [job.pk]


def test_a_job_whose_worker_is_gone_gets_its_subjects_back_and_is_sent_at_once(sent, olx_source, tmp_path):
    """
    The worker's lock is gone (outbox.liveness: its process died) while its courses' lease
    (300 s) runs and its task was just sent: the pick-up gives its courses back and sends
    the job at once, once; a job a live worker holds (its lock held) is left alone.
    """
    add_courses(olx_source, tmp_path / "exports", 4)
    job = start_job(DumpJob.Scope.ALL, origin="test")
    plan(job, with_source(olx_source))
    DumpJob.objects.filter(pk=job.pk).update(dispatched_at=UtcNow())  # what dispatch() records
    with liveness.claiming("a worker") as worker:
        claimed = claim_items(job, worker.owner(), Producers(), 2)
        assert resume_stalled() == []  # alive: its lock is held
        end_lock(claimed[0].lease_owner)
        assert [resumed.pk for resumed in resume_stalled()] == [job.pk]
    assert statuses(job) == {DumpJobItem.Status.PENDING: 4}
    assert resume_stalled() == []  # just sent, nothing of a gone worker left: not again
    assert sent == [job.pk]


def test_finished_and_cancelled_jobs_are_never_sent_again(sent):
    job = start_job(DumpJob.Scope.ALL, origin="test")
    cancel_job(job)
    assert resume_stalled() == []
    assert sent == []


def test_the_dump_task_sends_itself_again_while_courses_are_left_and_not_after(settings, sent, olx_source,
                                                                               tmp_path, monkeypatch):
    keys = add_courses(olx_source, tmp_path / "exports", 3)
    job = start_job(DumpJob.Scope.ALL, origin="test")

    # Time is up after one course: a run of 0 s, below the setting's range (0.1 s), so given by its reader.
    with monkeypatch.context() as patched:
        patched.setattr(conf, "drain_max_secs", lambda: 0)
        assert tasks.run_dump_job(job.pk) == {"job": job.pk, "status": DumpJob.Status.RUNNING}
    assert statuses(job) == {DumpJobItem.Status.DONE: 1, DumpJobItem.Status.PENDING: 2}
    assert sent == [job.pk]

    settings.CLICKHOUSE_OUTBOX_DRAIN_MAX_SECS = 50
    assert tasks.run_dump_job(job.pk) == {"job": job.pk, "status": DumpJob.Status.DONE}
    assert sent == [job.pk, ("drain", job.pk)]  # done: not sent again; its last rows drained now
    assert tasks.run_dump_job(job.pk) == {"job": job.pk, "active": False}
    assert sent == [job.pk, ("drain", job.pk)]
    assert dump_snapshots_per_course() == dict.fromkeys(keys, 1)
