"""
Working on a dump job: list its courses once (plan), then claim a chunk, take a snapshot of
each course, and finish the job when none is left.

A chunk's courses are read and serialized outside any transaction, then written in one
transaction that also marks each course done, only while this worker still holds the
chunk's leases: a worker that lost one (it stalled, another took over) rolls the chunk
back, so a course is queued once per job. A worker killed mid-chunk leaves claimed courses
whose lease runs out; the next worker takes them and the job goes on where it stopped.
"""

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.db import DatabaseError, models, transaction
from django.db.models import DateTimeField, ExpressionWrapper, Q

from clickhouse_outbox import conf
from clickhouse_outbox.models import DumpJob, DumpJobCourse, Snapshot
from clickhouse_outbox.outbox.clock import UtcNow, db_now
from clickhouse_outbox.outbox.drain import retry_lock_conflicts
from clickhouse_outbox.outbox.enqueue import enqueue, record_failed_snapshot
from clickhouse_outbox.producers.course_structure import prepare_snapshot
from clickhouse_outbox.serializers.course_structure import PRODUCER
from clickhouse_outbox.sources import get_course_source
from clickhouse_outbox.sources.base import CourseNotFound, CourseSourceError
from clickhouse_outbox.text import last_line

log = logging.getLogger(__name__)

#: The snapshot reason of courses queued by a dump job.
REASON = "dump"
#: How often a worker looks whether its job was cancelled while it reads a chunk.
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


def take_chunk(rows, owner, source, stop=None):
    """
    Queue claimed courses: each is read and serialized first, outside any transaction (a
    slow read holds no lock), then all are written in one transaction that also marks each
    course done or failed, only while `owner` still holds its lease; if another worker took
    one meanwhile, the whole transaction is rolled back (its snapshots count, not these).
    `stop()`, asked after each read, ends the reading early: what was read is written, the
    rest stays claimed (for `release`). Returns an Outcome per course written (status None
    where the lease was lost).
    """
    now = db_now()
    prepared = []
    for row in rows:
        prepared.append(prepare_snapshot(row.course_key, source=source, now=now))
        if stop and stop():
            break
    rows = rows[: len(prepared)]
    try:
        with transaction.atomic():
            outcomes = record(rows, prepared, owner)
            if outcomes and outcomes[0].status is None:
                transaction.set_rollback(True)
                log.warning("clickhouse_outbox: lost the lease on courses of dump job %s", rows[0].job_id)
                return [Outcome(row.course_key, None, None) for row in rows]
        return outcomes
    except DatabaseError as exc:  # one course's rows the database refuses: each course on its own
        if len(rows) == 1:
            raise
        log.warning("clickhouse_outbox: a chunk of dump job %s could not be written (%s); course by course",
                    rows[0].job_id, exc)
        return [take_chunk([row], owner, source)[0] for row in rows]


def record(rows, prepared, owner):
    """Queue what was read, record what could not be, and mark each course with its outcome."""
    read = [snapshot for snapshot in prepared if snapshot.error is None]
    queued = dict(zip([snapshot.subject for snapshot in read], enqueue(PRODUCER, read, reason=REASON), strict=True))
    outcomes = []
    for row, snapshot in zip(rows, prepared, strict=True):
        if snapshot.error is None:
            outcomes.append(Outcome(row.course_key, DumpJobCourse.Status.DONE, queued[snapshot.subject]))
        elif isinstance(snapshot.error, CourseNotFound):  # the source listed it, then lost it: nothing to retry
            outcomes.append(Outcome(row.course_key, DumpJobCourse.Status.FAILED, None, str(snapshot.error)))
        else:  # a course that cannot be read is a failed snapshot, for outbox_requeue --failed
            failed = record_failed_snapshot(PRODUCER, row.course_key, snapshot.error, dump_id=snapshot.dump_id,
                                            reason=REASON)
            outcomes.append(Outcome(row.course_key, DumpJobCourse.Status.FAILED, failed, last_line(failed.error)))
    # One UPDATE marks them all, and only while `owner` holds every lease.
    marked = DumpJobCourse.objects.filter(
        pk__in=[row.pk for row in rows], lease_owner=owner, status=DumpJobCourse.Status.CLAIMED
    ).update(
        status=per_row(rows, [outcome.status for outcome in outcomes], models.CharField()),
        snapshot=per_row(rows, [outcome.snapshot.pk if outcome.snapshot else None for outcome in outcomes],
                         models.BigIntegerField()),
        error=per_row(rows, [outcome.error[:4000] for outcome in outcomes], models.TextField()),
        lease_owner=None,
        lease_expires_at=None,
    )
    if marked != len(rows):
        return [Outcome(row.course_key, None, None) for row in rows]
    return outcomes


def per_row(rows, values, output_field):
    """A CASE giving each row (by primary key) its value."""
    return models.Case(
        *[models.When(pk=row.pk, then=models.Value(value, output_field=output_field))
          for row, value in zip(rows, values, strict=True)],
        output_field=output_field,
    )


def take(row, owner, source):
    """Queue one claimed course (see `take_chunk`)."""
    return take_chunk([row], owner, source)[0]


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
    """Take the claimed `rows`; False if time ran out or the job was cancelled meanwhile."""
    checked = renewed = time.monotonic()
    stopped = False

    def stop():
        nonlocal checked, renewed, stopped
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            stopped = True
        elif now - checked >= CANCEL_CHECK_SECS:
            checked = now
            stopped = not DumpJob.objects.filter(pk=job.pk, status=DumpJob.Status.RUNNING).exists()
        if not stopped and now - renewed >= conf.lease_secs() / 3:  # a chunk of large courses takes a while
            renewed = now
            renew(job, owner)
        return stopped

    for outcome in take_chunk(rows, owner, source, stop=stop):
        if on_course:
            on_course(outcome)
    return not stopped and not stop()
