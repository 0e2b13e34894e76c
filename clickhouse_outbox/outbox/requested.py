"""
Deferred snapshots, for very large courses (CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain").

The publish's transaction writes only a `requested` Snapshot row (and retires the older
requests of the same course no drainer has started on: ten publishes in a row make one
snapshot). The request commits if and only if the publish does, as a snapshot would. The
drain takes the requests before it sends: it leases a few, reads and serializes each
course outside any transaction, then fills in the rows of each request in one transaction,
only while it still holds the lease (a drainer that died leaves requests whose lease runs
out; the next one takes them). A course that cannot be read fails the request, kept with
its traceback for `outbox_requeue --failed`, as at publish.
"""

import logging
import time
import uuid
from datetime import timedelta

from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, Q

from clickhouse_outbox import conf
from clickhouse_outbox.models import Snapshot
from clickhouse_outbox.outbox.clock import UtcNow, db_now
from clickhouse_outbox.outbox.enqueue import failure_text, fill_requested

log = logging.getLogger(__name__)


def request_snapshot(producer, subject, reason):
    """Record that `subject` changed, in the caller's transaction: two short statements."""
    with transaction.atomic(savepoint=False):
        Snapshot.objects.filter(
            producer=producer, subject=subject, status=Snapshot.Status.REQUESTED, lease_owner__isnull=True
        ).update(status=Snapshot.Status.SUPERSEDED)
        return Snapshot.objects.create(producer=producer, subject=subject, reason=reason,
                                       status=Snapshot.Status.REQUESTED)


def requests_waiting():
    return Snapshot.objects.filter(status=Snapshot.Status.REQUESTED)


def claim_requests(owner, size):
    """Lease up to `size` requests no live drainer holds, oldest first (a compare-and-swap)."""
    free = requests_waiting().filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=UtcNow()))
    ids = list(free.order_by("id").values_list("id", flat=True)[:size])
    if not ids:
        return []
    lease_end = ExpressionWrapper(UtcNow() + timedelta(seconds=conf.lease_secs()), output_field=DateTimeField())
    free.filter(id__in=ids).update(lease_owner=owner, lease_expires_at=lease_end)
    return list(Snapshot.objects.filter(id__in=ids, lease_owner=owner).order_by("id"))


def take_requested(*, max_seconds=None, source=None):
    """Take requested snapshots until none is left or `max_seconds` passed; returns how many."""
    from clickhouse_outbox.producers.course_structure import prepare_snapshot  # noqa: PLC0415 (a cycle)
    from clickhouse_outbox.serializers.course_structure import PRODUCER  # noqa: PLC0415
    from clickhouse_outbox.sources import get_course_source  # noqa: PLC0415

    owner = uuid.uuid4()
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    taken = 0
    while deadline is None or time.monotonic() < deadline:
        requests = claim_requests(owner, conf.dump_chunk_courses())
        if not requests:
            break
        source = source or get_course_source()
        now = db_now()
        prepared = [prepare_snapshot(request.subject, source=source, now=now) for request in requests]
        read = [(request, snapshot) for request, snapshot in zip(requests, prepared, strict=True) if not snapshot.error]
        with transaction.atomic():
            if read and not fill_requested(PRODUCER, *zip(*read, strict=True), owner):
                log.warning("clickhouse_outbox: lost the lease on requested snapshots; another drainer has them")
                continue
            for request, snapshot in zip(requests, prepared, strict=True):
                if snapshot.error is not None:
                    log.error("clickhouse_outbox: could not take the requested snapshot of %s; recorded as failed",
                              request.subject, exc_info=snapshot.error)
                    Snapshot.objects.filter(pk=request.pk, lease_owner=owner).update(
                        status=Snapshot.Status.FAILED, error=failure_text(snapshot.error), lease_owner=None,
                        lease_expires_at=None,
                    )
        taken += len(requests)
    return taken
