"""
Working on a dump job: list its courses once (plan), then claim a chunk, take a snapshot of
each course, and finish the job when none is left.

Each course is its own transaction, which also marks the course done only if this worker
still holds its lease: a worker that lost the lease (it stalled, another took over) rolls
its snapshot back, so a course is queued once per job. A worker killed mid-chunk leaves
claimed courses whose lease runs out; the next worker takes them and the job goes on
where it stopped.
"""

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, Q

from clickhouse_outbox import conf
from clickhouse_outbox.models import DumpJob, DumpJobCourse, Snapshot
from clickhouse_outbox.outbox.clock import UtcNow
from clickhouse_outbox.outbox.drain import retry_lock_conflicts
from clickhouse_outbox.producers.course_structure import snapshot_or_record_failure
from clickhouse_outbox.sources import get_course_source
from clickhouse_outbox.sources.base import CourseNotFound, CourseSourceError
from clickhouse_outbox.text import last_line

log = logging.getLogger(__name__)

#: The snapshot reason of courses queued by a dump job.
REASON = "dump"
#: How often a worker looks whether its job was cancelled while it works through a chunk.
CANCEL_CHECK_SECS = 2.0


@dataclass
class Outcome:
    """What happened to one course: `status` is a DumpJobCourse.Status, or None if the lease was lost."""

    course_key: str
    status: str | None
    snapshot: Snapshot | None
    error: str = ""


def lease_end():
    return ExpressionWrapper(UtcNow() + timedelta(seconds=conf.lease_secs()), output_field=DateTimeField())


def plan(job, source):
    """
    List a queued job's courses and start it; True if this call did. Listing is repeated
    harmlessly if two workers plan at once: only one moves the job from queued to running.
    A source that cannot list its courses fails the job with the reason.
    """
    try:
        if job.scope == DumpJob.Scope.ALL:
            keys = source.course_keys()
        elif job.scope == DumpJob.Scope.CHANGED:
            keys = source.course_keys_changed_since(job.changed_since)
        else:
            keys = None  # listed when the job was started
    except CourseSourceError as exc:
        DumpJob.objects.filter(pk=job.pk, status=DumpJob.Status.QUEUED).update(
            status=DumpJob.Status.FAILED, active=None, error=str(exc), finished_at=UtcNow()
        )
        log.error("clickhouse_outbox: dump job %s failed: the courses could not be listed: %s", job.pk, exc)
        return False
    with transaction.atomic():
        started = DumpJob.objects.filter(pk=job.pk, status=DumpJob.Status.QUEUED).update(
            status=DumpJob.Status.RUNNING, started_at=UtcNow()
        )
        if not started:
            return False
        if keys is not None:
            DumpJobCourse.objects.bulk_create(
                [DumpJobCourse(job=job, course_key=str(key), position=index) for index, key in enumerate(keys)],
                batch_size=500,
            )
    log.info("clickhouse_outbox: dump job %s started: %s", job.pk, job.description)
    return True


def claimable(job):
    return DumpJobCourse.objects.filter(job=job).filter(
        Q(status=DumpJobCourse.Status.PENDING)
        | Q(status=DumpJobCourse.Status.CLAIMED, lease_expires_at__lte=UtcNow())
    )


def claim_courses(job, owner, size):
    """
    Lease the next `size` courses of a running job to `owner`, in list order: pending ones,
    and claimed ones whose worker's lease ran out. A compare-and-swap UPDATE, so any number
    of workers may claim at once on any database.
    """
    if not DumpJob.objects.filter(pk=job.pk, status=DumpJob.Status.RUNNING).exists():
        return []
    while True:
        ids = list(claimable(job).order_by("position").values_list("id", flat=True)[:size])
        if not ids:
            return []
        claimable(job).filter(id__in=ids).update(
            status=DumpJobCourse.Status.CLAIMED, lease_owner=owner, lease_expires_at=lease_end()
        )
        rows = list(DumpJobCourse.objects.filter(id__in=ids, lease_owner=owner, status=DumpJobCourse.Status.CLAIMED)
                    .order_by("position"))
        if rows:
            return rows
        # Other workers claimed every one of them between the read and the swap: look again
        # (each lost round means they took courses, so this ends).


class ReadAhead:
    """
    `source`, with one course read before the transaction opens (a slow read then holds no
    database lock: on SQLite, where a transaction takes the write lock, it would stop every
    other worker), or the error reading it raised, handed to the producer inside it.
    """

    def __init__(self, source, course_key):
        self.source, self.course_key = source, str(course_key)
        try:
            self.course, self.error = source.get_course(course_key), None
        except Exception as exc:  # noqa: BLE001 (raised again where the producer reads the course)
            self.course, self.error = None, exc

    def get_course(self, course_key):
        if str(course_key) != self.course_key:
            return self.source.get_course(course_key)
        if self.error is not None:
            raise self.error
        return self.course


def take(row, owner, source):
    """Queue one claimed course and record the outcome, in one transaction."""
    source = ReadAhead(source, row.course_key)
    with transaction.atomic():
        try:
            snapshot = snapshot_or_record_failure(row.course_key, REASON, source=source, record_not_found=False)
        except CourseNotFound as exc:
            snapshot, error = None, str(exc)
        else:
            error = last_line(snapshot.error) if snapshot.status == Snapshot.Status.FAILED else ""
        status = DumpJobCourse.Status.FAILED if error else DumpJobCourse.Status.DONE
        recorded = DumpJobCourse.objects.filter(
            pk=row.pk, lease_owner=owner, status=DumpJobCourse.Status.CLAIMED
        ).update(status=status, snapshot=snapshot, error=error[:4000], lease_owner=None, lease_expires_at=None)
        if not recorded:
            transaction.set_rollback(True)  # another worker has this course now: its snapshot counts
            log.warning("clickhouse_outbox: lost the lease on %s in dump job %s", row.course_key, row.job_id)
            return Outcome(row.course_key, None, None)
    return Outcome(row.course_key, status, snapshot, error)


def release(job, owner):
    """Give back the courses `owner` claimed but did not take (time is up, or it was stopped)."""
    return DumpJobCourse.objects.filter(job=job, lease_owner=owner, status=DumpJobCourse.Status.CLAIMED).update(
        status=DumpJobCourse.Status.PENDING, lease_owner=None, lease_expires_at=None
    )


def renew(job, owner):
    DumpJobCourse.objects.filter(job=job, lease_owner=owner, status=DumpJobCourse.Status.CLAIMED).update(
        lease_expires_at=lease_end()
    )


def finish_if_done(job):
    """Mark a running job done once none of its courses is pending or claimed; True if this call did."""
    left = DumpJobCourse.objects.filter(
        job=job, status__in=[DumpJobCourse.Status.PENDING, DumpJobCourse.Status.CLAIMED]
    ).exists()
    if left:
        return False
    done = bool(DumpJob.objects.filter(pk=job.pk, status=DumpJob.Status.RUNNING).update(
        status=DumpJob.Status.DONE, active=None, finished_at=UtcNow()
    ))
    if done:
        log.info("clickhouse_outbox: dump job %s is done", job.pk)
    return done


def run_job(job, *, max_seconds=None, source=None, on_course=None, chunk_size=None):
    """
    Work on `job` until it is done, cancelled or failed, nothing is left to claim (other
    workers hold the rest), or `max_seconds` passed. Courses claimed but not reached are
    given back. `on_course(outcome)` is called after each course. Returns the job, reloaded.
    """
    owner = uuid.uuid4()
    source = source or get_course_source()
    chunk_size = chunk_size or conf.dump_chunk_courses()
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    job.refresh_from_db()
    if job.status == DumpJob.Status.QUEUED:
        plan(job, source)
        job.refresh_from_db()
    try:
        while job.status == DumpJob.Status.RUNNING:
            rows = retry_lock_conflicts(claim_courses, job, owner, chunk_size)
            if not rows:
                finish_if_done(job)
                break
            if not work_through(job, rows, owner, source, on_course, deadline):
                break
            job.refresh_from_db(fields=["status"])
    finally:
        release(job, owner)
    job.refresh_from_db()
    if job.status == DumpJob.Status.RUNNING and finish_if_done(job):
        job.refresh_from_db()
    return job


def work_through(job, rows, owner, source, on_course, deadline):
    """Take the claimed `rows` in order; False if time ran out or the job was cancelled."""
    checked = renewed = time.monotonic()
    renew_every = conf.lease_secs() / 3
    for row in rows:
        outcome = take(row, owner, source)
        if on_course:
            on_course(outcome)
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return False
        if now - checked >= CANCEL_CHECK_SECS:
            checked = now
            if not DumpJob.objects.filter(pk=job.pk, status=DumpJob.Status.RUNNING).exists():
                return False
        if now - renewed >= renew_every:
            renewed = now
            renew(job, owner)
    return True
