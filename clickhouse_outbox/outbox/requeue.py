"""
Requeueing what failed: batches that ran out of attempts (or whose rows ClickHouse
rejected), and courses whose snapshot could not be taken.
"""

from django.db.models import Max

from clickhouse_outbox.models import Batch, Snapshot
from clickhouse_outbox.outbox.clock import UtcNow


def requeue_batches(queryset=None):
    """Give failed batches a fresh set of attempts, due now; returns how many."""
    queryset = Batch.objects.all() if queryset is None else queryset
    return queryset.filter(status=Batch.Status.FAILED).update(
        status=Batch.Status.RETRY, attempts=0, next_attempt_at=UtcNow(), lease_owner=None, lease_expires_at=None,
        server_error=False,
    )


def failed_subjects(producer):
    """Subjects whose latest snapshot could not be taken."""
    latest = Snapshot.objects.filter(producer=producer).values("subject").annotate(latest=Max("id")).values("latest")
    return list(
        Snapshot.objects.filter(id__in=latest, status=Snapshot.Status.FAILED)
        .order_by("subject")
        .values_list("subject", flat=True)
    )
