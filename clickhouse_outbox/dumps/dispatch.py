"""
Handing dump jobs to celery, and picking up the jobs nobody works on.

A job's task works for at most CLICKHOUSE_OUTBOX_DRAIN_MAX_SECS, then sends itself again
while courses are left, so one job never holds a worker for hours. If a worker dies (or
the broker loses the task), the periodic drain task gives the dead worker's courses back
(its database lock is gone: see `outbox.liveness`), or waits for their lease to run out,
and sends a new task for the job: it resumes where it stopped. The task that finishes a
dump sends the drain task (`drain_soon`), so the job's last rows do not wait for beat.
"""

import logging

from celery import current_app
from django.db.models import Q

from clickhouse_outbox import conf
from clickhouse_outbox.db import UtcNow, db_time_in
from clickhouse_outbox.models import DumpCursor, DumpJob, DumpJobItem
from clickhouse_outbox.outbox import liveness
from clickhouse_outbox.schedule import DRAIN_TASK, DUMP_TASK

log = logging.getLogger(__name__)


def dispatch(job):
    """Send a celery task to work on `job`; False (and a log line) if the broker did not take it."""
    DumpJob.objects.filter(pk=job.pk).update(dispatched_at=UtcNow())
    return send(DUMP_TASK, (job.pk,), f"dump job {job.pk}", "the periodic drain task will send it again")


def drain_soon(job):
    """
    Send the drain task now: `job` has queued its last rows, which go at once rather than at
    celery beat's next run (up to CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS later). A drain
    already running makes it return at once; that run sends them.
    """
    return send(DRAIN_TASK, (), f"the drain of dump job {job.pk}'s last rows", "beat's next drain sends them")


def send(task, args, what, otherwise):
    """Send the celery task named `task`; False (and a log line saying `otherwise`) if the broker did not take it."""
    try:
        # By name (tasks.py imports this module), on a connection of its own to the broker the
        # app is configured with now: these are rare, and a pool would keep the first broker.
        with current_app.connection_for_write() as connection:
            current_app.send_task(task, args, connection=connection)
    except Exception as exc:  # noqa: BLE001 (kombu raises many kinds)
        log.error("clickhouse_outbox: could not send %s to celery (%s); %s", what, exc, otherwise)
        return False
    return True


def resume_stalled():
    """
    Send a task for each active job that no worker holds: none of its subjects is claimed on
    a live lease by a live worker, and no task was sent for it within a lease period, or a
    worker of it died (its subjects are given back first, so the next run does not count that
    death again while the task waits for a worker). Returns the jobs sent.
    """
    quiet_since = db_time_in(-conf.lease_secs())
    quiet = Q(dispatched_at__isnull=True) | Q(dispatched_at__lte=quiet_since)
    sent = []
    for job in DumpJob.objects.filter(active=True):
        held = DumpJobItem.objects.filter(job=job, status=DumpJobItem.Status.CLAIMED, lease_expires_at__gt=UtcNow())
        owners = set(held.values_list("lease_owner", flat=True).distinct().order_by())
        owners |= set(DumpCursor.objects.filter(job=job, finished=False, lease_expires_at__gt=UtcNow())
                      .exclude(lease_owner__isnull=True).values_list("lease_owner", flat=True).distinct().order_by())
        abandoned = liveness.abandoned(owners)
        if owners - abandoned:
            continue  # a live worker holds some of it
        due = quiet
        if abandoned and give_back(job, abandoned):
            log.warning("clickhouse_outbox: a worker of dump job %s died; its subjects are given back", job.pk)
            due = Q()  # sent at once, however recently the dead worker's task was
        elif not DumpJob.objects.filter(pk=job.pk).filter(quiet).exists():
            continue
        # Compare-and-swap on dispatched_at: two beat runs at once send one task.
        # (on the condition itself, not on equality with the time read: SQLite's clock has milliseconds,
        # Django writes microseconds, so the stored text never equals the value read back).
        if DumpJob.objects.filter(pk=job.pk, active=True).filter(due).update(dispatched_at=UtcNow()):
            log.warning("clickhouse_outbox: dump job %s had no worker; sending it to celery again", job.pk)
            if dispatch(job):
                sent.append(job)
    return sent


def give_back(job, abandoned):
    """Put the subjects (and cursors) of gone workers back to pending (on the owner read: a worker that claims them first wins)."""
    cursors = DumpCursor.objects.filter(job=job, lease_owner__in=list(abandoned)).update(
        lease_owner=None, lease_expires_at=None
    )
    return cursors + DumpJobItem.objects.filter(
        job=job, status=DumpJobItem.Status.CLAIMED, lease_owner__in=list(abandoned)
    ).update(status=DumpJobItem.Status.PENDING, lease_owner=None, lease_expires_at=None)
