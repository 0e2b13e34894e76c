"""
The periodic drain, the optional periodic verification and sweep, for celery beat
(django-celery-beat), and the task that works on dump jobs and verifications.
"""

import logging
import time
import uuid

from celery import shared_task
from django.core.cache import cache
from edx_django_utils.monitoring import set_custom_attribute

from clickhouse_outbox import conf
from clickhouse_outbox.dumps.dispatch import dispatch, drain_soon, resume_stalled
from clickhouse_outbox.dumps.jobs import DumpAlreadyActive, start_job
from clickhouse_outbox.dumps.run import run_job
from clickhouse_outbox.models import DumpJob, DumpJobItem
from clickhouse_outbox.monitoring.report import report_drain
from clickhouse_outbox.outbox import registry
from clickhouse_outbox.outbox.drain import drain
from clickhouse_outbox.outbox.purge import purge_if_due
from clickhouse_outbox.reconcile.sweep import sweep
from clickhouse_outbox.schedule import DRAIN_TASK, DUMP_TASK, SWEEP_TASK, VERIFY_TASK, beat_entry

log = logging.getLogger(__name__)

LOCK_KEY = "clickhouse_outbox:drain-lock"
SWEEP_LOCK_KEY = "clickhouse_outbox:sweep-lock"


def beat_schedule_entry():
    """The beat entry for the current CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS."""
    return beat_entry(conf.drain_interval_secs())


@shared_task(name=DRAIN_TASK, ignore_result=True)
def drain_outbox():
    """
    Drain what is due, for at most CLICKHOUSE_OUTBOX_DRAIN_MAX_SECS, then purge what retention lets go
    (every few minutes, not on every run), and send a task for any dump job no worker holds.

    Beat may start a run while the last one is still going: the cache lock (an atomic
    `add`, released only by its owner) makes the later one return at once. The claim
    itself keeps overlapping drains safe even where the cache is not shared.

    Each run is reported as custom attributes of the task (and to StatsD where a host is
    set): `monitoring.report`.
    """
    max_secs = conf.drain_max_secs()
    owner = uuid.uuid4().hex
    if not cache.add(LOCK_KEY, owner, timeout=int(max_secs) + 60):
        log.info("clickhouse_outbox: another drain holds the lock; this run does nothing")
        set_custom_attribute("clickhouse_outbox.drain_skipped", True)
        return {"skipped": True}
    set_custom_attribute("clickhouse_outbox.drain_skipped", False)
    started = time.monotonic()
    try:
        result = drain(max_seconds=max_secs, threads=conf.drain_threads())
        purged = purge_if_due()
        resume_stalled()
    finally:
        if cache.get(LOCK_KEY) == owner:
            cache.delete(LOCK_KEY)
    log.info("clickhouse_outbox: drain finished: %s; %s", result, "no purge this run" if purged is None else purged)
    report_drain(result, time.monotonic() - started)  # custom attributes; StatsD if configured
    return {"skipped": False, "batches_sent": result.batches_sent, "rows_sent": result.rows_sent,
            "batches_retrying": result.batches_retrying, "batches_failed": result.batches_failed}


@shared_task(name=DUMP_TASK, ignore_result=True)
def run_dump_job(job_id):
    """
    Work on a dump job for at most CLICKHOUSE_OUTBOX_DRAIN_MAX_SECS, then send this task
    again while courses (or key ranges of a whole-table dump) are left unclaimed. Any number of these may run on one job.
    The run that finishes a dump sends the drain task, so its last rows go now, not at beat's next run.
    """
    job = DumpJob.objects.filter(pk=job_id, active=True).first()
    if job is None:
        return {"job": job_id, "active": False}
    job = run_job(job, max_seconds=conf.drain_max_secs())
    unclaimed = (job.items.filter(status=DumpJobItem.Status.PENDING).exists()
                 or job.cursors.filter(finished=False, lease_owner__isnull=True).exists())  # key ranges left
    if job.active and (unclaimed or job.status == DumpJob.Status.QUEUED):
        dispatch(job)
    elif job.repair_job_id and job.repair_job.active:  # a verification that found differences: its repair
        dispatch(job.repair_job)
    elif job.action == DumpJob.Action.DUMP and job.status == DumpJob.Status.DONE:
        drain_soon(job)
    return {"job": job_id, "status": job.status}


@shared_task(name=VERIFY_TASK, ignore_result=True)
def verify_outbox():
    """
    The periodic verification (CLICKHOUSE_OUTBOX_VERIFY_INTERVAL_SECS): a verification job of
    every producer that is on, unless a job is under way, worked on like a dump job.
    """
    names = [producer.name for producer in registry.enabled_producers()]
    if not names:
        return {"started": False}
    try:
        job = start_job(DumpJob.Scope.ALL, producers=names, action=DumpJob.Action.VERIFY, origin="periodic")
    except DumpAlreadyActive as exc:
        log.info("clickhouse_outbox: no periodic verification this time: %s", exc)
        return {"started": False}
    return run_dump_job(job.pk)


@shared_task(name=SWEEP_TASK, ignore_result=True)
def sweep_outbox():
    """
    The periodic sweep (CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS): the learner and tag tables read
    by key ranges, for at most CLICKHOUSE_OUTBOX_DRAIN_MAX_SECS, and every row that differs from
    what was sent queued (see reconcile.sweep); the next run goes on where this one stopped. One
    at a time (a cache lock, as the drain's); the drain sends what it queued.
    """
    max_secs = conf.drain_max_secs()
    owner = uuid.uuid4().hex
    if not cache.add(SWEEP_LOCK_KEY, owner, timeout=int(max_secs) + 60):
        log.info("clickhouse_outbox: another sweep holds the lock; this run does nothing")
        return {"skipped": True}
    try:
        results = sweep(max_seconds=max_secs)
    finally:
        if cache.get(SWEEP_LOCK_KEY) == owner:
            cache.delete(SWEEP_LOCK_KEY)
    return {"skipped": False, "producers": [result.as_dict() for result in results]}
