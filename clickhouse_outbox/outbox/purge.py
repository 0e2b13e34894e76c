"""
Retention: what the outbox no longer needs is deleted after CLICKHOUSE_OUTBOX_RETENTION_DAYS,
in bounded chunks, so its size follows what is in flight, not how much was ever sent.

    sent batches and their entries              RETENTION_DAYS after they were sent
    entries that will never be sent             RETENTION_DAYS after they were queued
      (superseded, removed by a retirement or
      a delete, split into smaller batches),
      and split batches
    snapshots with no entries left              RETENTION_DAYS after they were taken, unless
                                                the latest of their subject, failed (an unsent
                                                change) or a request not taken yet
    chunks of whole-table dumps (their          the same, once newer chunks cover every key of
      snapshot and DumpChunk) with no entries     their range (verification counts a key by
      left, of finished jobs                      the newest chunk holding it)
    the subjects of finished dump jobs, and     RETENTION_DAYS after the job finished (the
      the jobs                                  latest job of each action stays)
    failed batches (rows ClickHouse rejected    FAILED_RETENTION_DAYS after they failed, each
      for good) and their entries               logged as a WARNING; their snapshots become
                                                `rejected`. Never a failed delete.

Unsent rows are otherwise never deleted by age. Every query starts from an index (the
batches' status and time, the entries' status and age, their batch or snapshot, a subject's
snapshots), so a run costs the same on a site with millions of rows, and each chunk is one
short transaction. Times are the database's. A snapshot is looked at when the purge deletes
its last entries, or those of a newer snapshot of its subject: every snapshot but the latest
is reached that way, without scanning the table. A chunk's subject is its key range, which
the next dump's chunks seldom repeat: a chunk is reached with those overlapping its range.
"""

import logging
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, fields
from datetime import timedelta

from django.core.cache import cache
from django.db import transaction
from django.db.models import Q

from clickhouse_outbox import conf
from clickhouse_outbox.db import db_now
from clickhouse_outbox.models import Batch, DumpChunk, DumpJob, DumpJobItem, Kind, OutboxEntry, Snapshot
from clickhouse_outbox.text import format_age, plural

log = logging.getLogger(__name__)

CHUNK = 500
#: Dump job subjects are small rows: a learner dump lists millions of them.
ITEM_CHUNK = 5000
PURGE_KEY = "clickhouse_outbox:purged-recently"
PURGE_INTERVAL_SECS = 600

#: Entries whose rows will never be sent.
UNSENDABLE = (OutboxEntry.Status.SUPERSEDED, OutboxEntry.Status.REMOVED, OutboxEntry.Status.SPLIT)
#: Snapshots kept whatever their age: an unsent change, a request not taken yet.
KEPT = (Snapshot.Status.FAILED, Snapshot.Status.REQUESTED)
FINISHED_JOBS = (DumpJob.Status.DONE, DumpJob.Status.CANCELLED, DumpJob.Status.FAILED)


@dataclass
class Purged:
    """What one purge deleted."""

    sent_batches: int = 0
    split_batches: int = 0
    failed_batches: int = 0
    entries: int = 0
    snapshots: int = 0
    dump_items: int = 0
    dump_jobs: int = 0

    @property
    def batches(self):
        return self.sent_batches + self.split_batches + self.failed_batches

    def __bool__(self):
        return any(getattr(self, field.name) for field in fields(self))

    def __str__(self):
        parts = [plural(getattr(self, name), *nouns) for name, nouns in (
            ("sent_batches", ("sent batch", "sent batches")), ("split_batches", ("split batch", "split batches")),
            ("failed_batches", ("failed batch", "failed batches")), ("entries", ("entry", "entries")),
            ("snapshots", ("snapshot",)), ("dump_items", ("dump job subject",)), ("dump_jobs", ("dump job",)),
        ) if getattr(self, name)]
        return "purged " + (", ".join(parts) if parts else "nothing")


@dataclass(frozen=True)
class Cutoffs:
    """Database time now, and what is older than each period."""

    now: object
    kept: object
    failed: object

    @classmethod
    def from_settings(cls):
        now = db_now()
        return cls(now, now - timedelta(days=conf.retention_days()), now - timedelta(days=conf.failed_retention_days()))


def purge(max_chunks=20):
    """Delete up to `max_chunks` chunks of each kind of what retention lets go; returns Purged."""
    cutoffs = Cutoffs.from_settings()
    purged = Purged()
    for step, counter in ((purge_sent_batches, "sent_batches"), (purge_split_batches, "split_batches"),
                          (purge_failed_batches, "failed_batches"), (purge_unsendable_entries, "entries")):
        for _ in range(max_chunks):
            with transaction.atomic():
                count, snapshots = step(cutoffs, purged)
            setattr(purged, counter, getattr(purged, counter) + count)
            purged.snapshots += snapshots
            if count < CHUNK:
                break
    purge_dump_jobs(cutoffs, purged, max_chunks)
    if purged:
        log.info("clickhouse_outbox: retention %s", purged)
    return purged


def purge_sent_batches(cutoffs, purged):
    ids = list(Batch.objects.filter(status=Batch.Status.SENT, sent_at__lt=cutoffs.kept).order_by()
               .values_list("id", flat=True)[:CHUNK])
    return len(ids), delete_batches(ids, cutoffs, purged)


def purge_split_batches(cutoffs, purged):
    """Batches split to isolate a rejected row: their rows live on in the batches they were split into."""
    ids = list(Batch.objects.filter(status=Batch.Status.SPLIT, created__lt=cutoffs.kept).order_by()
               .values_list("id", flat=True)[:CHUNK])
    return len(ids), delete_batches(ids, cutoffs, purged)


def purge_failed_batches(cutoffs, purged):
    """
    Batches of rows ClickHouse rejected for good (or that ran out of attempts), failed before
    the failed-rows period: each is logged, its snapshots become `rejected`. A failed delete
    stays: it is a retirement or a deleted subject that ClickHouse must still apply.
    """
    failed_before = Q(last_error_at__lt=cutoffs.failed) | Q(last_error_at__isnull=True, created__lt=cutoffs.failed)
    # Locked: staff retrying one of them now (FAILED -> RETRY) waits, or goes first and keeps it.
    failed = list(
        Batch.objects.select_for_update().filter(failed_before, status=Batch.Status.FAILED, kind=Kind.INSERT).order_by()
        .values_list("id", "table", "row_count", "last_error_at", "created", "error_code", named=True)[:CHUNK]
    )
    if not failed:
        return 0, 0
    ids = [batch.id for batch in failed]
    rejected = set(OutboxEntry.objects.filter(batch_id__in=ids).order_by()
                   .values_list("snapshot_id", "status").distinct())
    Snapshot.objects.filter(
        id__in=[snapshot_id for snapshot_id, status in rejected if status == OutboxEntry.Status.BATCHED],
        status=Snapshot.Status.QUEUED,
    ).update(status=Snapshot.Status.REJECTED)
    for batch in failed:
        log.warning(
            "clickhouse_outbox: purged failed batch %s of %s: %s ClickHouse did not take (error code %s), failed %s "
            "ago; CLICKHOUSE_OUTBOX_FAILED_RETENTION_DAYS is %g",
            batch.id, batch.table, plural(batch.row_count, "row"), "none" if batch.error_code is None else batch.error_code,
            format_age((cutoffs.now - (batch.last_error_at or batch.created)).total_seconds()),
            conf.failed_retention_days(),
        )
    return len(ids), delete_batches(ids, cutoffs, purged)


def purge_unsendable_entries(cutoffs, purged):
    """Entries whose rows will never be sent, queued before the retention period, wherever they are."""
    rows = list(OutboxEntry.objects.filter(status__in=UNSENDABLE, created__lt=cutoffs.kept).order_by()
                .values_list("id", "snapshot_id")[:CHUNK])
    if not rows:
        return 0, 0
    OutboxEntry.objects.filter(id__in=[entry_id for entry_id, _ in rows]).delete()
    return len(rows), drop_emptied_snapshots({snapshot_id for _, snapshot_id in rows}, cutoffs)


def delete_batches(ids, cutoffs, purged):
    """Delete batches with their entries; then the snapshots that lost their last entries. Returns snapshots deleted."""
    if not ids:
        return 0
    snapshot_ids = set(OutboxEntry.objects.filter(batch_id__in=ids).order_by().values_list("snapshot_id", flat=True)
                       .distinct())
    purged.entries += OutboxEntry.objects.filter(batch_id__in=ids).delete()[0]
    Batch.objects.filter(id__in=ids).delete()
    return drop_emptied_snapshots(snapshot_ids, cutoffs)


def drop_emptied_snapshots(snapshot_ids, cutoffs):
    """
    Of the subjects of `snapshot_ids`, delete the snapshots that have no entries left, were
    taken before the retention period, are not their subject's latest, and are neither
    failed nor waiting to be taken. Read through the subject index, a handful per subject.
    """
    snapshot_ids.discard(None)
    if not snapshot_ids:
        return 0
    return drop_superseded_snapshots(snapshot_ids, cutoffs) + drop_covered_chunks(snapshot_ids, cutoffs)


def drop_superseded_snapshots(snapshot_ids, cutoffs):
    subjects = {}
    for producer, subject in Snapshot.objects.filter(id__in=snapshot_ids).order_by().values_list("producer", "subject"):
        subjects.setdefault(producer, set()).add(subject)
    candidates = []
    for producer, names in subjects.items():
        rows = list(Snapshot.objects.filter(producer=producer, subject__in=names).order_by()
                    .values_list("id", "subject", "status", "created"))
        latest = {}
        for snapshot_id, subject, _, _ in rows:
            latest[subject] = max(latest.get(subject, 0), snapshot_id)
        candidates += [snapshot_id for snapshot_id, subject, status, created in rows
                       if snapshot_id != latest[subject] and status not in KEPT and created < cutoffs.kept]
    if not candidates:
        return 0
    holding = set(OutboxEntry.objects.filter(snapshot_id__in=candidates).order_by().values_list("snapshot_id", flat=True))
    doomed = [snapshot_id for snapshot_id in candidates if snapshot_id not in holding]
    return Snapshot.objects.filter(id__in=doomed).delete()[1].get(Snapshot._meta.label, 0) if doomed else 0


def drop_covered_chunks(snapshot_ids, cutoffs):
    """
    Of the chunks of whole-table dumps overlapping those of `snapshot_ids`, delete those whose
    every key a newer chunk holds, with no entries left, taken before the retention period,
    of finished jobs (their DumpChunk goes with the snapshot). The newest chunk holding a
    key stays: a verification counts the key by it (`reconcile.verify.covering_chunks`).
    """
    spans = {}
    for producer, key_from, key_to in (DumpChunk.objects.filter(snapshot_id__in=snapshot_ids).order_by()
                                       .values_list("producer", "key_from", "key_to")):
        low, high = spans.get(producer, (key_from, key_to))
        spans[producer] = (min(low, key_from), max(high, key_to))
    covered = {}
    for producer, span in spans.items():
        chunks = overlapping_chunks(producer, *span)
        covered.update({snapshot_id: job_id for snapshot_id, job_id in covered_by_newer(chunks)})
    if not covered:
        return 0
    unfinished = set(DumpJob.objects.filter(id__in={job for job in covered.values() if job is not None})
                     .exclude(status__in=FINISHED_JOBS).values_list("id", flat=True))
    candidates = list(Snapshot.objects.filter(
        id__in=[snapshot_id for snapshot_id, job_id in covered.items() if job_id not in unfinished],
        created__lt=cutoffs.kept,
    ).exclude(status__in=KEPT).order_by().values_list("id", flat=True))
    if not candidates:
        return 0
    holding = set(OutboxEntry.objects.filter(snapshot_id__in=candidates).order_by().values_list("snapshot_id", flat=True))
    doomed = [snapshot_id for snapshot_id in candidates if snapshot_id not in holding]
    return Snapshot.objects.filter(id__in=doomed).delete()[1].get(Snapshot._meta.label, 0) if doomed else 0


def overlapping_chunks(producer, low, high):
    """
    `producer`'s chunks overlapping keys `low` to `high`, and those overlapping them in turn
    (a chunk straddling the edge is judged with every chunk holding its keys), through the
    (producer, key_from) index.
    """
    while True:
        chunks = list(DumpChunk.objects.filter(producer=producer, key_from__lte=high, key_to__gte=low).order_by()
                      .values_list("snapshot_id", "key_from", "key_to", "job_id"))
        if not chunks:  # deleted meanwhile
            return chunks
        wider = (min(chunk[1] for chunk in chunks), max(chunk[2] for chunk in chunks))
        if wider == (low, high) or (wider[0] >= low and wider[1] <= high):
            return chunks
        low, high = min(low, wider[0]), max(high, wider[1])


def covered_by_newer(chunks):
    """(snapshot id, job id) of each of `chunks` (snapshot id, key from, key to, job id) whose keys newer ones all hold."""
    starts, ends = [], []  # the keys held by the newer chunks: disjoint ranges, in order
    for snapshot_id, key_from, key_to, job_id in sorted(chunks, reverse=True):  # newest first
        at = bisect_right(starts, key_from) - 1
        if at >= 0 and ends[at] >= key_to:
            yield snapshot_id, job_id
            continue
        # Merge [key_from, key_to] with the ranges it touches.
        first = bisect_left(ends, key_from - 1)
        last = bisect_right(starts, key_to + 1)
        if first < last:
            key_from, key_to = min(key_from, starts[first]), max(key_to, ends[last - 1])
        starts[first:last], ends[first:last] = [key_from], [key_to]


def purge_dump_jobs(cutoffs, purged, max_chunks):
    """
    The subjects of dump jobs that finished before the retention period (ITEM_CHUNK at a
    time), then those jobs, except the latest finished job of each action (the admin's
    "changed since" starts from the last dump).
    """
    old = DumpJob.objects.filter(status__in=FINISHED_JOBS, finished_at__lt=cutoffs.kept)
    old_ids = list(old.order_by().values_list("id", flat=True)[:CHUNK])
    for _ in range(max_chunks):
        item_ids = list(DumpJobItem.objects.filter(job_id__in=old_ids).order_by().values_list("id", flat=True)
                        [:ITEM_CHUNK])
        if not item_ids:
            break
        purged.dump_items += DumpJobItem.objects.filter(id__in=item_ids).delete()[0]
    latest = {DumpJob.objects.filter(status__in=FINISHED_JOBS, action=action).order_by("-id")
              .values_list("id", flat=True).first() for action in DumpJob.Action.values}
    emptied = [job_id for job_id in old_ids if job_id not in latest
               and not DumpJobItem.objects.filter(job_id=job_id).order_by().exists()]
    if emptied:
        purged.dump_jobs += DumpJob.objects.filter(id__in=emptied).delete()[1].get(DumpJob._meta.label, 0)


def purge_if_due():
    """
    Purge at most once per PURGE_INTERVAL_SECS across all drainers (the cache's atomic add
    elects one), so the frequent drain runs do not look for old rows each time. Returns
    Purged, or None when it was not this run's turn.
    """
    if not cache.add(PURGE_KEY, "purging", timeout=PURGE_INTERVAL_SECS):
        return None
    return purge()
