"""
Where a snapshot's rows are: derived from its entries and their batches, never stored.

A snapshot's live entries are those not superseded or split (a split entry's rows live on
in new entries of the same snapshot). Its delivery state is the most urgent state among
them: the course's rows are only in ClickHouse once every live entry's batch is sent.
"""

from django.db.models import Case, CharField, Count, Exists, Max, Min, OuterRef, Subquery, TextChoices, Value, When

from clickhouse_outbox.models import Batch, OutboxEntry, Snapshot


class State(TextChoices):
    """From the most urgent to the least."""

    UNREADABLE = "unreadable", "Could not be read"
    REJECTED = "rejected", "Rejected by ClickHouse; purged"
    REQUESTED = "requested", "Requested: read at the next drain"
    FAILED = "failed", "Failed"
    WAITING = "waiting", "Waiting to retry"
    SENDING = "sending", "Sending"
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    DISMISSED = "dismissed", "Dismissed"
    DELETED = "deleted", "Deleted"
    SUPERSEDED = "superseded", "Superseded"


#: Batch statuses whose rows are not (yet) in ClickHouse, by the state they give a snapshot.
BATCH_STATES = {
    State.FAILED: Batch.Status.FAILED,
    State.WAITING: Batch.Status.RETRY,
    State.SENDING: Batch.Status.CLAIMED,
}


def live_entries():
    """Entries of the outer snapshot whose rows still count."""
    return OutboxEntry.objects.filter(
        snapshot=OuterRef("pk"), status__in=[OutboxEntry.Status.PENDING, OutboxEntry.Status.BATCHED]
    )


def with_delivery(snapshots):
    """
    `snapshots` annotated with `delivery_state` (a `State` value, computed by the database,
    so it can be filtered and sorted on), `delivered_at`, `next_attempt_at` (of a waiting
    batch), `batch_count`, and the last error of its most urgent unsent batch:
    `batch_error`, `batch_error_code`, `batch_http_status`, `batch_server_error`.
    """
    entries = live_entries()
    flags = {f"has_{state}": Exists(entries.filter(batch__status=status)) for state, status in BATCH_STATES.items()}
    flags["has_pending"] = Exists(entries.filter(status=OutboxEntry.Status.PENDING))
    urgent = Batch.objects.filter(
        entries__snapshot=OuterRef("pk"),
        entries__status=OutboxEntry.Status.BATCHED,
        status__in=[Batch.Status.FAILED, Batch.Status.RETRY],
    ).order_by("status", "-id")  # "failed" sorts before "retry"
    state = Case(
        When(status=Snapshot.Status.FAILED, then=Value(State.UNREADABLE.value)),
        When(status=Snapshot.Status.REJECTED, then=Value(State.REJECTED.value)),
        When(status=Snapshot.Status.REQUESTED, then=Value(State.REQUESTED.value)),
        When(status=Snapshot.Status.DISMISSED, then=Value(State.DISMISSED.value)),
        When(status=Snapshot.Status.DELETED, then=Value(State.DELETED.value)),
        When(status=Snapshot.Status.SUPERSEDED, then=Value(State.SUPERSEDED.value)),
        When(has_failed=True, then=Value(State.FAILED.value)),
        When(has_waiting=True, then=Value(State.WAITING.value)),
        When(has_sending=True, then=Value(State.SENDING.value)),
        When(has_pending=True, then=Value(State.PENDING.value)),
        default=Value(State.DELIVERED.value),
        output_field=CharField(),
    )
    return snapshots.annotate(**flags).annotate(
        delivery_state=state,
        delivered_at=Subquery(
            entries.values("snapshot").annotate(last=Max("batch__sent_at")).values("last")[:1]
        ),
        next_attempt_at=Subquery(
            entries.filter(batch__status=Batch.Status.RETRY)
            .values("snapshot")
            .annotate(first=Min("batch__next_attempt_at"))
            .values("first")[:1]
        ),
        batch_count=Subquery(
            OutboxEntry.objects.filter(snapshot=OuterRef("pk"), batch__isnull=False)
            .values("snapshot")
            .annotate(n=Count("batch", distinct=True))
            .values("n")[:1]
        ),
        batch_error=Subquery(urgent.values("last_error")[:1]),
        batch_error_code=Subquery(urgent.values("error_code")[:1]),
        batch_http_status=Subquery(urgent.values("http_status")[:1]),
        batch_server_error=Subquery(urgent.values("server_error")[:1]),
    )
