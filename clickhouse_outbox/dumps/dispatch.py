"""
Handing dump jobs to celery, and picking up the jobs nobody works on.

A job's task works for at most CLICKHOUSE_OUTBOX_DRAIN_MAX_SECS, then sends itself again
while courses are left, so one job never holds a worker for hours. If a worker dies (or
the broker loses the task), the job's claimed courses run out of lease and the periodic
drain task sends a new task for it: the job resumes where it stopped.
"""

import logging
from datetime import timedelta

from django.db.models import DateTimeField, ExpressionWrapper, Q

from clickhouse_outbox import conf
from clickhouse_outbox.models import DumpJob, DumpJobCourse
from clickhouse_outbox.outbox.clock import UtcNow

log = logging.getLogger(__name__)


def dispatch(job):
    """Send a celery task to work on `job`; False (and a log line) if the broker did not take it."""
    from clickhouse_outbox.tasks import run_dump_job  # pylint: disable=import-outside-toplevel

    DumpJob.objects.filter(pk=job.pk).update(dispatched_at=UtcNow())
    try:
        # A connection of its own, to the broker the app is configured with now (rarely used: no pool).
        with run_dump_job.app.connection_for_write() as connection:
            run_dump_job.apply_async((job.pk,), connection=connection)
    except Exception as exc:  # noqa: BLE001 (kombu raises many kinds; the job waits for the next pick-up)
        log.error("clickhouse_outbox: could not send dump job %s to celery (%s); the periodic drain task will "
                  "send it again", job.pk, exc)
        return False
    return True


def resume_stalled():
    """
    Send a task for each active job that no worker holds: none of its courses is claimed on
    a live lease, and no task was sent for it within a lease period. Returns the jobs sent.
    """
    quiet_since = ExpressionWrapper(UtcNow() - timedelta(seconds=conf.lease_secs()), output_field=DateTimeField())
    quiet = Q(dispatched_at__isnull=True) | Q(dispatched_at__lte=quiet_since)
    candidates = DumpJob.objects.filter(active=True).filter(quiet)
    sent = []
    for job in candidates:
        working = DumpJobCourse.objects.filter(
            job=job, status=DumpJobCourse.Status.CLAIMED, lease_expires_at__gt=UtcNow()
        ).exists()
        if working:
            continue
        # Compare-and-swap on dispatched_at: two beat runs at once send one task.
        # (on the condition itself, not on equality with the time read: SQLite's clock has milliseconds,
        # Django writes microseconds, so the stored text never equals the value read back).
        if DumpJob.objects.filter(pk=job.pk, active=True).filter(quiet).update(dispatched_at=UtcNow()):
            log.warning("clickhouse_outbox: dump job %s had no worker; sending it to celery again", job.pk)
            if dispatch(job):
                sent.append(job)
    return sent
