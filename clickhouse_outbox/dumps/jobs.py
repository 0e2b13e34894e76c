"""
Starting, cancelling and reporting on dump jobs. At most one job is active at a time: the
database enforces it (`DumpJob.active` is unique), so two staff pressing "dump all
courses" at once get one job and a clear message.
"""

from django.db import IntegrityError, transaction
from django.db.models import Count

from clickhouse_outbox.models import DumpJob, DumpJobCourse
from clickhouse_outbox.outbox.clock import UtcNow
from clickhouse_outbox.text import plural


class DumpAlreadyActive(Exception):
    """Another dump job is queued or running; `job` is that job."""

    def __init__(self, job):
        self.job = job
        progress = job_progress(job) if job else {}
        done = f", {progress['done']:,} of {plural(progress['total'], 'course')} done" if progress.get("total") else ""
        what = f"Dump job {job.pk} ({job.description}, {job.status}{done})" if job else "Another dump job"
        super().__init__(
            f"{what} is under way, and two dumps cannot run at once. Wait for it to finish, or cancel it in the "
            "admin (ClickHouse outbox > Dump jobs)."
        )


def start_job(scope, *, origin, changed_since=None, course_keys=None, user=None):
    """
    Create a dump job (queued: a worker lists its courses). For `SELECTED` the courses are
    listed now, from `course_keys`. Raises DumpAlreadyActive if a job is under way.
    """
    if scope == DumpJob.Scope.CHANGED and changed_since is None:
        raise ValueError("A dump of the courses changed since a time needs that time.")
    if scope == DumpJob.Scope.SELECTED and not course_keys:
        raise ValueError("A dump of selected courses needs at least one course key.")
    try:
        with transaction.atomic():
            job = DumpJob.objects.create(
                scope=scope, changed_since=changed_since, origin=origin, requested_by=user, active=True
            )
            if scope == DumpJob.Scope.SELECTED:
                keys = list(dict.fromkeys(str(key) for key in course_keys))
                DumpJobCourse.objects.bulk_create(
                    [DumpJobCourse(job=job, course_key=key, position=index) for index, key in enumerate(keys)],
                    batch_size=500,
                )
    except IntegrityError:
        raise DumpAlreadyActive(active_job()) from None
    return job


def active_job():
    """The queued or running job, or None."""
    return DumpJob.objects.filter(active=True).first()


def cancel_job(job):
    """Stop a queued or running job; courses already queued stay queued. True if it was active."""
    return bool(
        DumpJob.objects.filter(pk=job.pk, active=True).update(
            status=DumpJob.Status.CANCELLED, active=None, finished_at=UtcNow()
        )
    )


def job_progress(job):
    """{"total", "done", "failed", "left"} courses of the job (derived from its course rows)."""
    counts = dict(job.courses.values_list("status").annotate(n=Count("id")).order_by())
    done = counts.get(DumpJobCourse.Status.DONE, 0)
    failed = counts.get(DumpJobCourse.Status.FAILED, 0)
    left = counts.get(DumpJobCourse.Status.PENDING, 0) + counts.get(DumpJobCourse.Status.CLAIMED, 0)
    return {"total": done + failed + left, "done": done, "failed": failed, "left": left}


def progress_line(job, progress=None):
    """'120 of 3,000 courses (118 queued, 2 failed)'."""
    progress = job_progress(job) if progress is None else progress
    handled = progress["done"] + progress["failed"]
    text = f"{handled:,} of {plural(progress['total'], 'course')} ({progress['done']:,} queued"
    return text + (f", {progress['failed']:,} failed)" if progress["failed"] else ")")
