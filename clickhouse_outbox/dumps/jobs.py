"""
Starting, cancelling and reporting on dump jobs. At most one job is active at a time: the
database enforces it (`DumpJob.active` is unique), so two staff pressing "dump all
courses" at once get one job and a clear message.
"""

from django.db import IntegrityError, transaction
from django.db.models import Count

from clickhouse_outbox.db import UtcNow
from clickhouse_outbox.dumps import ranges
from clickhouse_outbox.models import DumpJob, DumpJobItem
from clickhouse_outbox.outbox import registry
from clickhouse_outbox.text import plural

#: Items created per INSERT when a job's subjects are listed.
LIST_BATCH = 1000
#: What a dump dumps unless told: courses (the admin's dump, dump_courses_to_clickhouse).
DEFAULT_PRODUCERS = ("course_structure",)


class DumpAlreadyActive(Exception):
    """Another dump job is queued or running; `job` is that job."""

    def __init__(self, job):
        self.job = job
        progress = job_progress(job) if job else {}
        done = f", {progress['done']:,} of {plural(progress['total'], *job_noun(job))} done" if progress.get("total") else ""
        what = f"Dump job {job.pk} ({job.description}, {job.status}{done})" if job else "Another dump job"
        super().__init__(
            f"{what} is under way, and two dumps cannot run at once. Wait for it to finish, or cancel it in the "
            "admin (ClickHouse outbox > Dump jobs)."
        )


def start_job(scope, *, origin, producers=DEFAULT_PRODUCERS, changed_since=None, subjects=None, user=None,
              action=DumpJob.Action.DUMP, repair=False, replicas=DumpJob.Replicas.ONE):
    """
    Create a dump job (or, `action` VERIFY, a verification: `repair` to dump again what
    differs, `replicas` EACH to look at every replica) of the subjects of `producers` (names;
    queued: a worker lists them). For `SELECTED` the subjects are listed now: `subjects`,
    (producer name, subject) pairs. Raises DumpAlreadyActive if a job is under way.
    """
    if scope == DumpJob.Scope.SELECTED:
        producers = list(dict.fromkeys(name for name, _ in subjects or ()))
    names = list(dict.fromkeys(producers))
    for name in names:
        registry.get(name)  # UnknownProducer names the ones there are
    if scope == DumpJob.Scope.CHANGED and changed_since is None:
        raise ValueError("A dump of what changed since a time needs that time.")
    if scope == DumpJob.Scope.SELECTED and not subjects:
        raise ValueError("A dump of selected subjects needs at least one.")
    if not names:
        raise ValueError("A dump needs at least one producer.")
    try:
        with transaction.atomic():
            job = DumpJob.objects.create(
                scope=scope, producers=",".join(names), changed_since=changed_since, origin=origin,
                requested_by=user, active=True, action=action, repair=repair, replicas=replicas,
            )
            if scope == DumpJob.Scope.SELECTED:
                add_items(job, [(name, str(subject)) for name, subject in subjects])
    except IntegrityError:
        raise DumpAlreadyActive(active_job()) from None
    return job


def add_items(job, listed):
    """A job's (producer, subject) items, in order, each once."""
    unique = list(dict.fromkeys(listed))
    DumpJobItem.objects.bulk_create(
        [DumpJobItem(job=job, producer=name, subject=subject, position=index)
         for index, (name, subject) in enumerate(unique)],
        batch_size=LIST_BATCH,
    )


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
    """{"total", "done", "failed", "left"} subjects of the job (derived from its items), and rows of its key ranges."""
    counts = dict(job.items.values_list("status").annotate(n=Count("id")).order_by())
    done = counts.get(DumpJobItem.Status.DONE, 0)
    failed = counts.get(DumpJobItem.Status.FAILED, 0)
    left = counts.get(DumpJobItem.Status.PENDING, 0) + counts.get(DumpJobItem.Status.CLAIMED, 0)
    walked = ranges.progress(job)  # rows of the tables walked by key range: the total is estimated
    return {"total": done + failed + left + walked["total"], "done": done + walked["done"],
            "failed": failed + walked["failed"],
            "left": left + walked["left"]}


def job_noun(job):
    """('course', 'courses') for a job of courses; the words of its producer, or 'subject' when it has several."""
    names = job.producer_names
    if len(names) == 1:
        try:
            return registry.get(names[0]).noun
        except registry.UnknownProducer:
            pass
    return ("subject", "subjects")


def progress_line(job, progress=None):
    """'120 of 3,000 courses (118 queued, 2 failed)'."""
    progress = job_progress(job) if progress is None else progress
    handled = progress["done"] + progress["failed"]
    one, many = job_noun(job)
    text = f"{handled:,} of {plural(progress['total'], one, many)}"
    if job.action == DumpJob.Action.VERIFY:
        return text + f" ({progress['done']:,} ok, {progress['failed']:,} to repair)"
    text += f" ({progress['done']:,} queued"
    return text + (f", {progress['failed']:,} failed)" if progress["failed"] else ")")
