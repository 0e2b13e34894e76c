"""
Requeueing what failed or waits: batches that ran out of attempts, were rejected, or wait
out a backoff; subjects whose snapshot could not be taken; and dismissing the snapshots of
subjects the source does not know.
"""

from dataclasses import dataclass

from django.db import transaction
from django.db.models import F, Max

from clickhouse_outbox.db import UtcNow
from clickhouse_outbox.models import Batch, Snapshot
from clickhouse_outbox.outbox import registry
from clickhouse_outbox.sources.base import SubjectNotFound


@dataclass
class RetryResult:
    retried: int
    #: Batches made due that were waiting out a failure of the server itself (not selected).
    released: int


def retry_now(queryset=None):
    """
    Make failed and waiting batches due now, with a fresh set of attempts: staff or an
    operator fixed the cause (a setting, the server) and want the rows sent at the next drain.

    `attempts` keeps counting (the history stays); the limit counts from here. A batch that
    waits out a server-wide failure holds back every new claim, so it is made due too, even
    if not selected: otherwise the retried rows would still wait behind it.
    """
    queryset = Batch.objects.all() if queryset is None else queryset
    due_now = {
        "status": Batch.Status.RETRY,
        "next_attempt_at": UtcNow(),
        "attempts_at_requeue": F("attempts"),
        "lease_owner": None,
        "lease_expires_at": None,
    }
    with transaction.atomic():
        retried = queryset.filter(status__in=[Batch.Status.FAILED, Batch.Status.RETRY]).update(**due_now)
        released = Batch.objects.filter(
            status=Batch.Status.RETRY, server_error=True, next_attempt_at__gt=UtcNow()
        ).update(**due_now)
    return RetryResult(retried=retried, released=released)


def failed_subjects(producer):
    """Subjects whose latest snapshot could not be taken."""
    return list(latest_snapshots(producer).filter(status=Snapshot.Status.FAILED).values_list("subject", flat=True))


def latest_snapshots(producer=None, model=Snapshot):
    """The latest snapshot of each subject (of `producer`, or of every producer), as `model` (or a proxy of it)."""
    snapshots = Snapshot.objects.all() if producer is None else Snapshot.objects.filter(producer=producer)
    latest = snapshots.values("producer", "subject").annotate(latest=Max("id")).values("latest")
    return model.objects.filter(id__in=latest).order_by("subject")


def dismiss_unknown(snapshots, overrides=None):
    """
    Dismiss failed snapshots whose subject the source does not know (a mistyped key, a
    deleted course): `--failed` and the admin stop offering them. A snapshot of a subject
    the source knows is kept: it is a real change to take again. Returns the dismissed
    snapshots, and (snapshot, why it was kept) pairs. `overrides` ({name: producer}) stands
    in for registered producers.
    """
    dismissed, kept = [], []
    for snapshot in snapshots.filter(status=Snapshot.Status.FAILED):
        try:
            producer = (overrides or {}).get(snapshot.producer) or registry.get(snapshot.producer)
            producer.knows(snapshot.subject)
        except (SubjectNotFound, registry.UnknownProducer):
            dismissed.append(snapshot)
            continue
        except Exception as exc:  # noqa: BLE001 (the source knows it but cannot read it: keep it)
            kept.append((snapshot, f"the {producer.source_noun} knows it but cannot read it ({exc})"))
            continue
        kept.append((snapshot, f"the {producer.source_noun} knows it: take a new snapshot instead"))
    Snapshot.objects.filter(id__in=[snapshot.id for snapshot in dismissed], status=Snapshot.Status.FAILED).update(
        status=Snapshot.Status.DISMISSED
    )
    return dismissed, kept
