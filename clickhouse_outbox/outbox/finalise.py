"""
Finalising a batch after its send: sent, retry later, split, or failed.

Every update is conditional on the drainer still holding the lease: a drainer whose lease
ran out or whose lock was lost (and whose batch another drainer took) changes nothing. Times come from the
database (`UtcNow()`), the backoff delay from the attempt count, with jitter.
"""

import logging
import random
from datetime import timedelta

from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, F

from clickhouse_outbox import conf
from clickhouse_outbox.clickhouse.errors import is_server_wide
from clickhouse_outbox.db import UtcNow
from clickhouse_outbox.models import Batch, OutboxEntry
from clickhouse_outbox.serializers.payloads import GZIP, compress, decompress

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 4000


def leased(batch, owner):
    return Batch.objects.filter(pk=batch.pk, status=Batch.Status.CLAIMED, lease_owner=owner)


def mark_sent(batch, owner):
    """
    True if the batch was still ours and is now sent. The errors of earlier attempts are
    cleared: a sent batch is not a failure (`attempts` still tells it needed retries).
    """
    done = leased(batch, owner).update(
        status=Batch.Status.SENT,
        sent_at=UtcNow(),
        lease_owner=None,
        lease_expires_at=None,
        next_attempt_at=None,
        last_error="",
        last_error_at=None,
        http_status=None,
        error_code=None,
        server_error=False,
    )
    if not done:
        log.warning("clickhouse_outbox: batch %s was sent, but another drainer took it meanwhile (this drainer's "
                    "lease ran out, or its database lock was lost)", batch.pk)
    return bool(done)


def give_back(batch, owner):
    """
    A claimed batch that was not sent at all (the drain's time was up before its request
    started) goes back as it was: due at once, its attempt not counted. True if it was ours.
    """
    return bool(leased(batch, owner).update(
        status=Batch.Status.RETRY,
        lease_owner=None,
        lease_expires_at=None,
        next_attempt_at=UtcNow(),
        attempts=F("attempts") - 1,
    ))


def backoff_delay(attempts):
    """Seconds before attempt `attempts + 1`: exponential, capped, with full jitter on the upper half."""
    ceiling = min(conf.backoff_max_secs(), conf.backoff_base_secs() * 2 ** max(attempts - 1, 0))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (jitter, not crypto)


def error_fields(exc):
    return {
        "last_error": str(exc)[:MAX_ERROR_CHARS],
        "last_error_at": UtcNow(),
        "http_status": getattr(exc, "http_status", None),
        "error_code": getattr(exc, "code", None),
        "server_error": is_server_wide(exc),
    }


def mark_failed(batch, owner, exc):
    """
    Record a failed send. Retryable errors wait (backoff) until the attempts run out, then
    the batch fails for good; rows ClickHouse rejected are isolated by splitting.
    Returns the batch's new status, or None if the lease was lost.
    """
    if not getattr(exc, "retryable", True):
        return split_or_fail(batch, owner, exc)
    if batch.attempts_left == 0:
        status = Batch.Status.FAILED
        changes = {}
    else:
        status = Batch.Status.RETRY
        delay = timedelta(seconds=backoff_delay(batch.attempts - batch.attempts_at_requeue))
        changes = {"next_attempt_at": ExpressionWrapper(UtcNow() + delay, output_field=DateTimeField())}
    done = leased(batch, owner).update(
        status=status, lease_owner=None, lease_expires_at=None, **changes, **error_fields(exc)
    )
    return status if done else None


def split_or_fail(batch, owner, exc):
    """
    ClickHouse rejected the data. Split the batch in two (by entries, or by the lines of
    its only entry) so every valid row is still delivered; a single rejected row fails
    with ClickHouse's message and waits for a requeue or a purge. Nothing is dropped.
    """
    with transaction.atomic():
        entries = list(OutboxEntry.objects.filter(batch=batch).order_by("id"))
        if len(entries) > 1:
            halves = [entries[: len(entries) // 2], entries[len(entries) // 2 :]]
            done = leased(batch, owner).update(
                status=Batch.Status.SPLIT, lease_owner=None, lease_expires_at=None, **error_fields(exc)
            )
            if not done:
                return None
            for half in halves:
                child = new_retry_batch(batch, sum(entry.row_count for entry in half))
                OutboxEntry.objects.filter(id__in=[entry.id for entry in half]).update(batch=child)
            return Batch.Status.SPLIT
        entry = entries[0]
        lines = decompress(entry.payload, entry.encoding).splitlines(keepends=True)
        if len(lines) <= 1:
            done = leased(batch, owner).update(
                status=Batch.Status.FAILED, lease_owner=None, lease_expires_at=None, **error_fields(exc)
            )
            return Batch.Status.FAILED if done else None
        done = leased(batch, owner).update(
            status=Batch.Status.SPLIT, lease_owner=None, lease_expires_at=None, **error_fields(exc)
        )
        if not done:
            return None
        OutboxEntry.objects.filter(pk=entry.pk).update(status=OutboxEntry.Status.SPLIT)
        middle = len(lines) // 2
        for part in (lines[:middle], lines[middle:]):
            child = new_retry_batch(batch, len(part))
            OutboxEntry.objects.create(
                snapshot_id=entry.snapshot_id,
                table=entry.table,
                status=OutboxEntry.Status.BATCHED,
                batch=child,
                row_count=len(part),
                payload=compress(b"".join(part)),
                encoding=GZIP,
                created=entry.created,  # as old as the rows it holds: the status measures their wait
            )
        return Batch.Status.SPLIT


def new_retry_batch(parent, rows):
    """
    A batch due at once, holding part of a split batch (a new token: its bytes differ). It
    names its parent, whose error may quote its rows: a retirement clears that error too.
    """
    return Batch.objects.create(table=parent.table, status=Batch.Status.RETRY, row_count=rows, next_attempt_at=UtcNow(),
                                split_from=parent)
