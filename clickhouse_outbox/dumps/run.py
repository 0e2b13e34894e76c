"""
Working on a dump job: list its subjects once (plan), then claim a chunk, take a snapshot of
each subject through its producer, and finish the job when none is left.

A chunk's subjects (all of one producer) are read and serialized outside any transaction,
then written in one transaction that also marks each subject done, only while this worker
still holds the chunk's leases: a worker that lost one (it stalled, another took over)
rolls the chunk back, so a subject is queued once per job. A worker killed mid-chunk
leaves claimed subjects that the next claim takes at once, its lock being gone (see
`outbox.liveness`; their lease is the last resort), and the job goes on where it stopped.
"""

import logging
import time
from dataclasses import dataclass

from django.db import DatabaseError, models, transaction
from django.db.models import Q
from django.db.models.functions import Cast

from clickhouse_outbox import conf
from clickhouse_outbox.db import UtcNow, db_now, lease_end, retry_lock_conflicts
from clickhouse_outbox.dumps import ranges
from clickhouse_outbox.dumps.jobs import add_items
from clickhouse_outbox.models import DumpJob, DumpJobItem, Snapshot
from clickhouse_outbox.outbox import liveness, registry
from clickhouse_outbox.outbox.enqueue import enqueue, record_failed_snapshot
from clickhouse_outbox.sources.base import SubjectNotFound, SubjectSourceError
from clickhouse_outbox.text import last_line

log = logging.getLogger(__name__)

#: The snapshot reason of subjects queued by a dump job.
REASON = "dump"
#: How often a worker looks whether its job was cancelled while it reads a chunk.
CANCEL_CHECK_SECS = 2.0


#: What a job of another action than DUMP does with a chunk of claimed subjects, by action:
#: `(job, rows, producer) -> [Outcome]` (marked by the runner). Registered by the module that
#: builds on dumps (reconcile registers VERIFY), so dumps never imports it.
CHUNK_ACTIONS = {}
#: What runs once a job of an action is done: `(job) -> None` (a verification's repair).
DONE_ACTIONS = {}


def register_action(action, *, chunk, done=None, key_range=None):
    """
    Make the runner take the chunks of jobs of `action` with `chunk`, call `done` when one
    ends, and, for a job of every subject, walk the tables of producers dumped by key range
    with `key_range` (as `ranges.take_range`) instead of listing their subjects.
    """
    CHUNK_ACTIONS[action] = chunk
    if done is not None:
        DONE_ACTIONS[action] = done
    if key_range is not None:
        ranges.RANGE_ACTIONS[action] = key_range


@dataclass
class Outcome:
    """What happened to one subject: `status` is a DumpJobItem.Status, or None if the lease was lost."""

    producer: str
    subject: str
    status: str | None
    snapshot: Snapshot | None
    error: str = ""


class Producers:
    """The job's producers by name: the registered ones, or `overrides` (tests, the bench)."""

    def __init__(self, overrides=None):
        self.overrides = dict(overrides or {})

    def __getitem__(self, name):
        return self.overrides.get(name) or registry.get(name)


def plan(job, overrides=None):
    """
    List a queued job's subjects and start it; True if this call did. Listing is repeated
    harmlessly if two workers plan at once: only one moves the job from queued to running.
    A source that cannot list its subjects (or a producer that does not exist) fails the
    job with the reason.
    """
    found = Producers(overrides)
    try:
        listed = None
        by_range = ranges.key_range_producers(job, found)
        if job.scope != DumpJob.Scope.SELECTED:  # selected subjects were listed when the job was started
            listed = []
            for name in job.producer_names:
                producer = found[name]
                if name in by_range:
                    continue  # walked by key range: nothing is listed (dumps.ranges)
                keys = (producer.all_subjects() if job.scope == DumpJob.Scope.ALL
                        else producer.subjects_changed_since(job.changed_since))
                listed.extend((name, str(key)) for key in keys)
    except (SubjectSourceError, registry.UnknownProducer) as exc:
        DumpJob.objects.filter(pk=job.pk, status=DumpJob.Status.QUEUED).update(
            status=DumpJob.Status.FAILED, active=None, error=str(exc), finished_at=UtcNow()
        )
        log.error("clickhouse_outbox: dump job %s failed: its subjects could not be listed: %s", job.pk, exc)
        return False
    with transaction.atomic():
        started = DumpJob.objects.filter(pk=job.pk, status=DumpJob.Status.QUEUED).update(
            status=DumpJob.Status.RUNNING, started_at=UtcNow()
        )
        if not started:
            return False
        if listed is not None:
            add_items(job, listed)
        ranges.add_cursors(job, found, by_range)
    log.info("clickhouse_outbox: dump job %s started: %s", job.pk, job.description)
    return True


def claimable(job, abandoned=()):
    """A job's subjects to claim: pending, or claimed by a worker whose lease ran out or who is gone (`abandoned`)."""
    free = Q(status=DumpJobItem.Status.PENDING) | Q(status=DumpJobItem.Status.CLAIMED, lease_expires_at__lte=UtcNow())
    if abandoned:
        free |= Q(status=DumpJobItem.Status.CLAIMED, lease_owner__in=list(abandoned))
    return DumpJobItem.objects.filter(job=job).filter(free)


def abandoned_owners(job):
    """Owners of the job's subjects claimed on a live lease whose worker is gone (its lock is free)."""
    owners = (DumpJobItem.objects.filter(job=job, status=DumpJobItem.Status.CLAIMED, lease_expires_at__gt=UtcNow())
              .values_list("lease_owner", flat=True).distinct().order_by())
    return liveness.abandoned(set(owners))


def claim_items(job, owner, found, size=None):
    """
    Lease the next subjects of a running job to `owner`, in list order, all of one producer
    (up to `size`, or that producer's `dump_chunk`): pending ones, and claimed ones whose
    worker is gone or whose lease ran out. A compare-and-swap UPDATE (on the owner read), so
    any number of workers may claim at once on any database.
    """
    if not DumpJob.objects.filter(pk=job.pk, status=DumpJob.Status.RUNNING).exists():
        return []
    abandoned = abandoned_owners(job)
    while True:
        first = claimable(job, abandoned).order_by("position").values_list("producer", flat=True).first()
        if first is None:
            return []
        try:
            chunk = size or found[first].dump_chunk
        except registry.UnknownProducer:
            chunk = size or 1
        ids = list(claimable(job, abandoned).filter(producer=first).order_by("position")
                   .values_list("id", flat=True)[:chunk])
        claimable(job, abandoned).filter(id__in=ids).update(
            status=DumpJobItem.Status.CLAIMED, lease_owner=owner, lease_expires_at=lease_end()
        )
        rows = list(DumpJobItem.objects.filter(id__in=ids, lease_owner=owner, status=DumpJobItem.Status.CLAIMED)
                    .order_by("position"))
        if rows:
            return rows
        # Other workers claimed every one of them between the read and the swap: look again
        # (each lost round means they took subjects, so this ends).


def take_chunk(rows, owner, found, stop=None, job=None):
    """
    Queue claimed subjects (all of one producer): each is read and serialized first, outside
    any transaction (a slow read holds no lock), then all are written in one transaction
    that also marks each subject done or failed, only while `owner` still holds its lease;
    if another worker took one meanwhile, the whole transaction is rolled back (its
    snapshots count, not these). `stop()`, asked after each read, ends the reading early:
    what was read is written, the rest stays claimed (for `release`). Returns an Outcome per
    subject written (status None where the lease was lost).
    """
    name = rows[0].producer
    try:
        producer = found[name]
    except registry.UnknownProducer as exc:
        return mark(rows, owner, [Outcome(name, row.subject, DumpJobItem.Status.FAILED, None, str(exc)) for row in rows])
    if job is not None and job.action in CHUNK_ACTIONS:
        outcomes = CHUNK_ACTIONS[job.action](job, rows, producer)
        with transaction.atomic():
            return mark(rows, owner, outcomes)
    now = db_now()
    prepared = []
    step = max(1, producer.read_at_once)
    for start in range(0, len(rows), step):
        prepared.extend(producer.prepare([row.subject for row in rows[start:start + step]], now=now))
        if stop and stop():
            break
    rows = rows[: len(prepared)]
    try:
        with transaction.atomic():
            outcomes = record(producer, rows, prepared, owner)
            if outcomes and outcomes[0].status is None:
                transaction.set_rollback(True)
                log.warning("clickhouse_outbox: lost the lease on subjects of dump job %s", rows[0].job_id)
                return [Outcome(name, row.subject, None, None) for row in rows]
        return outcomes
    except DatabaseError as exc:  # one subject's rows the database refuses: each subject on its own
        if len(rows) == 1:
            raise
        log.warning("clickhouse_outbox: a chunk of dump job %s could not be written (%s); one subject at a time",
                    rows[0].job_id, exc)
        return [take_chunk([row], owner, found)[0] for row in rows]


def record(producer, rows, prepared, owner):
    """Queue what was read, record what could not be, and mark each subject with its outcome."""
    read = [snapshot for snapshot in prepared if snapshot.error is None]
    queued = dict(zip([snapshot.subject for snapshot in read], enqueue(producer, read, reason=REASON), strict=True))
    outcomes = []
    for row, snapshot in zip(rows, prepared, strict=True):
        if snapshot.error is None:
            written = queued[snapshot.subject]
            note = "" if written is not None else "not queued: its user was retired"
            outcomes.append(Outcome(producer.name, row.subject, DumpJobItem.Status.DONE, written, note))
        elif isinstance(snapshot.error, SubjectNotFound):  # the source listed it, then lost it: nothing to retry
            outcomes.append(Outcome(producer.name, row.subject, DumpJobItem.Status.FAILED, None, str(snapshot.error)))
        else:  # a subject that cannot be read is a failed snapshot, for outbox_requeue --failed
            failed = record_failed_snapshot(producer.name, row.subject, snapshot.error, dump_id=snapshot.dump_id,
                                            reason=REASON, user_id=snapshot.user_id)
            outcomes.append(Outcome(producer.name, row.subject, DumpJobItem.Status.FAILED, failed,
                                    last_line(failed.error)))
    return mark(rows, owner, outcomes)


def mark(rows, owner, outcomes):
    """One UPDATE marks every row with its outcome, only while `owner` holds every lease (else status None)."""
    marked = DumpJobItem.objects.filter(
        pk__in=[row.pk for row in rows], lease_owner=owner, status=DumpJobItem.Status.CLAIMED
    ).update(
        status=per_row(rows, [outcome.status for outcome in outcomes], models.CharField()),
        snapshot=per_row(rows, [outcome.snapshot.pk if outcome.snapshot else None for outcome in outcomes],
                         models.BigIntegerField()),
        error=per_row(rows, [outcome.error[:4000] for outcome in outcomes], models.TextField()),
        lease_owner=None,
        lease_expires_at=None,
    )
    if marked != len(rows):
        return [Outcome(outcome.producer, outcome.subject, None, None) for outcome in outcomes]
    return outcomes


def per_row(rows, values, output_field):
    """
    Each row's value (by primary key) as one expression: the value itself when all share it,
    else a CASE with one branch per distinct value (a verification's chunk has two or three),
    cast to the column's type: PostgreSQL takes a CASE whose every branch is NULL for text.
    """
    by_value = {}
    for row, value in zip(rows, values, strict=True):
        by_value.setdefault(value, []).append(row.pk)
    if len(by_value) == 1:
        return Cast(models.Value(next(iter(by_value)), output_field=output_field), output_field=output_field)
    case = models.Case(
        *[models.When(pk__in=pks, then=models.Value(value, output_field=output_field)) for value, pks in by_value.items()],
        output_field=output_field,
    )
    return Cast(case, output_field=output_field)


def release(job, owner):
    """Give back the subjects `owner` claimed but did not take (time is up, or it was stopped)."""
    return DumpJobItem.objects.filter(job=job, lease_owner=owner, status=DumpJobItem.Status.CLAIMED).update(
        status=DumpJobItem.Status.PENDING, lease_owner=None, lease_expires_at=None
    )


def renew(job, owner):
    DumpJobItem.objects.filter(job=job, lease_owner=owner, status=DumpJobItem.Status.CLAIMED).update(
        lease_expires_at=lease_end()
    )


def finish_if_done(job):
    """Mark a running job done once none of its subjects is pending or claimed; True if this call did."""
    left = DumpJobItem.objects.filter(
        job=job, status__in=[DumpJobItem.Status.PENDING, DumpJobItem.Status.CLAIMED]
    ).exists()
    if left or ranges.unfinished(job):
        return False
    done = bool(DumpJob.objects.filter(pk=job.pk, status=DumpJob.Status.RUNNING).update(
        status=DumpJob.Status.DONE, active=None, finished_at=UtcNow()
    ))
    if done:
        log.info("clickhouse_outbox: job %s is done: %s", job.pk, job.description)
        if job.action in DONE_ACTIONS:
            DONE_ACTIONS[job.action](job)
    return done


def run_job(job, *, max_seconds=None, producers=None, on_item=None, chunk_size=None):
    """
    Work on `job` until it is done, cancelled or failed, nothing is left to claim (other
    workers hold the rest), or `max_seconds` passed. Subjects claimed but not reached are
    given back. `on_item(outcome)` is called after each subject; `producers` ({name:
    producer}) stands in for registered ones; `chunk_size` overrides each producer's
    `dump_chunk`. Returns the job, reloaded. The worker holds a database lock meanwhile
    (`outbox.liveness`): if it dies, others take its subjects at once.
    """
    with liveness.claiming(f"a worker of dump job {job.pk}") as claimer:
        return work_on(job, claimer, max_seconds, producers, on_item, chunk_size)


def work_on(job, claimer, max_seconds, producers, on_item, chunk_size):
    owner = claimer.owner()
    found = Producers(producers)
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    job.refresh_from_db()
    if chunk_size is None and job.action == DumpJob.Action.VERIFY:
        chunk_size = conf.verify_chunk_size()  # a chunk is a few aggregate queries, whatever its size
    if job.status == DumpJob.Status.QUEUED:
        plan(job, producers)
        job.refresh_from_db()
    try:
        if job.status == DumpJob.Status.RUNNING and not walk_ranges(job, claimer, owner, found, on_item, deadline,
                                                                     chunk_size):
            return finished(job)
        while job.status == DumpJob.Status.RUNNING:
            if not claimer.holds():  # its lock session was ended: the others take its subjects now
                break
            rows = retry_lock_conflicts(claim_items, job, owner, found, chunk_size)
            if not rows:
                finish_if_done(job)
                break
            if not work_through(job, rows, owner, found, on_item, deadline):
                break
            job.refresh_from_db(fields=["status"])
    finally:
        release(job, owner)
    return finished(job)


def finished(job):
    """The job reloaded, marked done first if nothing is left of it."""
    job.refresh_from_db()
    if job.status == DumpJob.Status.RUNNING and finish_if_done(job):
        job.refresh_from_db()
    return job


def walk_ranges(job, claimer, owner, found, on_item, deadline, chunk_size=None):
    """Work through the job's key ranges (`dumps.ranges`); False if time ran out, it was cancelled or the lock lost."""
    checked = time.monotonic()
    stopped = False

    def stop():
        nonlocal checked, stopped
        now = time.monotonic()
        if (deadline is not None and now >= deadline) or not claimer.holds():
            stopped = True
        elif now - checked >= CANCEL_CHECK_SECS:
            checked = now
            stopped = not DumpJob.objects.filter(pk=job.pk, status=DumpJob.Status.RUNNING).exists()
        return stopped

    def chunk_done(name, rows, seconds):
        if on_item:
            on_item(Outcome(name, f"{rows:,} rows", DumpJobItem.Status.DONE, None))

    return ranges.walk(job, owner, found, stop=stop, on_chunk=chunk_done, size=chunk_size) and not stopped


def work_through(job, rows, owner, found, on_item, deadline):
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

    for outcome in take_chunk(rows, owner, found, stop=stop, job=job):
        if on_item:
            on_item(outcome)
    return not stopped and not stop()
