"""
Handing dump jobs to celery, and picking up the jobs nobody works on.

A job's task works for at most CLICKHOUSE_OUTBOX_DRAIN_MAX_SECS, then sends itself again
while courses are left, so one job never holds a worker for hours. If a worker dies (or
the broker loses the task), the job's claimed courses run out of lease and the periodic
drain task sends a new task for it: the job resumes where it stopped.
"""

import logging
from celery import current_app
from django.db.models import Q

from clickhouse_outbox import conf
from clickhouse_outbox.models import DumpJob, DumpJobItem
from clickhouse_outbox.outbox.clock import UtcNow, db_time_in
from clickhouse_outbox.settings.common import DUMP_TASK

log = logging.getLogger(__name__)


def dispatch(job):
    """Send a celery task to work on `job`; False (and a log line) if the broker did not take it."""
    DumpJob.objects.filter(pk=job.pk).update(dispatched_at=UtcNow())
    try:
        # By name (tasks.py imports this module), on a connection of its own to the broker the
        # app is configured with now: dispatches are rare, and a pool would keep the first broker.
        with current_app.connection_for_write() as connection:
            current_app.send_task(DUMP_TASK, (job.pk,), connection=connection)
    except Exception as exc:  # noqa: BLE001 (kombu raises many kinds; the job waits for the next pick-up)
        log.error("clickhouse_outbox: could not send dump job %s to celery (%s); the periodic drain task will "
                  "send it again", job.pk, exc)
        return False
    return True


def resume_stalled():
    """
    Send a task for each active job that no worker holds: none of its subjects is claimed on
    a live lease, and no task was sent for it within a lease period. Returns the jobs sent.
    """
    quiet_since = db_time_in(-conf.lease_secs())
    quiet = Q(dispatched_at__isnull=True) | Q(dispatched_at__lte=quiet_since)
    candidates = DumpJob.objects.filter(active=True).filter(quiet)
    sent = []
    for job in candidates:
        working = DumpJobItem.objects.filter(
            job=job, status=DumpJobItem.Status.CLAIMED, lease_expires_at__gt=UtcNow()
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
