"""
Retention: sent rows are deleted after CLICKHOUSE_OUTBOX_RETENTION_DAYS, in bounded chunks.

Only batches that are sent (or were split, whose rows live on in other batches) are ever
purged; an unsent row is never deleted by age. The latest snapshot of each subject and
every failed snapshot are kept, so per-course state stays queryable.
"""

from datetime import timedelta

from django.db.models import DateTimeField, ExpressionWrapper, Max

from clickhouse_outbox import conf
from clickhouse_outbox.models import Batch, OutboxEntry, Snapshot
from clickhouse_outbox.outbox.clock import UtcNow

CHUNK = 500


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
    latest = set(Snapshot.objects.values("producer", "subject").annotate(latest=Max("id")).values_list("latest", flat=True))
    stale = (
        Snapshot.objects.filter(created__lt=cutoff(), entries__isnull=True)
        .exclude(status=Snapshot.Status.FAILED)
        .values_list("id", flat=True)[:CHUNK]
    )
    ids = [snapshot_id for snapshot_id in stale if snapshot_id not in latest]
    return Snapshot.objects.filter(id__in=ids).delete()[0] if ids else 0
