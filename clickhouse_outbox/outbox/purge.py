"""
Retention: sent rows are deleted after CLICKHOUSE_OUTBOX_RETENTION_DAYS, in bounded chunks.

Only batches that are sent (or were split, whose rows live on in other batches) are ever
purged; an unsent row is never deleted by age. The latest snapshot of each subject and
every failed snapshot are kept, so per-course state stays queryable.
"""

from datetime import timedelta

from django.core.cache import cache
from django.db.models import DateTimeField, ExpressionWrapper, Max

from clickhouse_outbox import conf
from clickhouse_outbox.models import Batch, OutboxEntry, Snapshot
from clickhouse_outbox.outbox.clock import UtcNow

CHUNK = 500
PURGE_KEY = "clickhouse_outbox:purged-recently"
PURGE_INTERVAL_SECS = 600


def cutoff():
    return ExpressionWrapper(UtcNow() - timedelta(days=conf.retention_days()), output_field=DateTimeField())


def purge_sent(max_chunks=20):
    """Delete up to `max_chunks` × CHUNK old sent batches with their entries; returns batches deleted."""
    deleted = 0
    for _ in range(max_chunks):
        sent = Batch.objects.filter(status=Batch.Status.SENT, sent_at__lt=cutoff())
        split = Batch.objects.filter(status=Batch.Status.SPLIT, created__lt=cutoff())
        ids = list(sent.values_list("id", flat=True)[:CHUNK]) or list(split.values_list("id", flat=True)[:CHUNK])
        if not ids:
            break
        OutboxEntry.objects.filter(batch_id__in=ids).delete()
        deleted += Batch.objects.filter(id__in=ids).delete()[0]
    purge_snapshots()
    return deleted


def purge_snapshots():
    """Old snapshots with no rows left, other than each subject's latest and the failed ones."""
    stale = list(
        Snapshot.objects.filter(created__lt=cutoff(), entries__isnull=True)
        .exclude(status=Snapshot.Status.FAILED)
        .values_list("id", "subject")[:CHUNK]
    )
    if not stale:
        return 0
    latest = set(
        Snapshot.objects.filter(subject__in={subject for _, subject in stale})
        .values("producer", "subject")
        .annotate(latest=Max("id"))
        .values_list("latest", flat=True)
    )
    ids = [snapshot_id for snapshot_id, _ in stale if snapshot_id not in latest]
    return Snapshot.objects.filter(id__in=ids).delete()[0] if ids else 0


def purge_if_due():
    """
    Purge at most once per PURGE_INTERVAL_SECS across all drainers (the cache's atomic add
    elects one), so the frequent drain runs do not scan the outbox for old rows each time.
    Returns the batches deleted, or None when it was not this run's turn.
    """
    if not cache.add(PURGE_KEY, "purging", timeout=PURGE_INTERVAL_SECS):
        return None
    return purge_sent()
