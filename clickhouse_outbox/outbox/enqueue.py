"""
Queueing a snapshot's rows, inside the caller's transaction.

One publish is a handful of INSERTs: the snapshot, its entries (one per table, split only
when large), and the updates that supersede older rows of the same subject that no
drainer has claimed yet, so ten publishes in a minute send one snapshot.
"""

import logging
import traceback

from django.db import transaction

from clickhouse_outbox import conf
from clickhouse_outbox.models import OutboxEntry, Snapshot
from clickhouse_outbox.serializers.encoding import chunk_lines

log = logging.getLogger(__name__)

# Entries per INSERT statement: with entries of at most CLICKHOUSE_OUTBOX_ENTRY_MAX_BYTES
# (1 MiB by default), a statement stays well under MariaDB's default max_allowed_packet.
ENTRIES_PER_STATEMENT = 4


def enqueue(producer, subject, rows_by_table, *, dump_id, time_last_dumped, reason=""):
    """Write a snapshot and its encoded rows; returns the Snapshot."""
    max_bytes = conf.entry_max_bytes()
    chunks = [
        (table, count, payload)
        for table, lines in rows_by_table.items()
        for count, payload in chunk_lines(lines, max_bytes)
    ]
    with transaction.atomic():
        supersede(producer, subject)
        snapshot = Snapshot.objects.create(
            producer=producer,
            subject=subject,
            reason=reason,
            dump_id=dump_id,
            time_last_dumped=time_last_dumped,
            row_count=sum(count for _, count, _ in chunks),
        )
        OutboxEntry.objects.bulk_create(
            [
                OutboxEntry(snapshot=snapshot, table=table, row_count=count, payload=payload)
                for table, count, payload in chunks
            ],
            batch_size=ENTRIES_PER_STATEMENT,
        )
    log.info(
        "clickhouse_outbox: queued %s snapshot %s of %s (%s): %d rows in %d entries",
        producer, dump_id, subject, reason or "-", snapshot.row_count, len(chunks),
    )
    return snapshot


def supersede(producer, subject):
    """
    Retire what a new snapshot of `subject` makes obsolete: pending entries of older
    snapshots (never claimed, so never sent) and older snapshots that could not be taken.
    """
    older = list(
        OutboxEntry.objects.filter(
            status=OutboxEntry.Status.PENDING, snapshot__producer=producer, snapshot__subject=subject
        )
        .values_list("snapshot_id", flat=True)
        .distinct()
    )
    if older:
        OutboxEntry.objects.filter(snapshot_id__in=older, status=OutboxEntry.Status.PENDING).update(
            status=OutboxEntry.Status.SUPERSEDED
        )
        claimed = set(
            OutboxEntry.objects.filter(snapshot_id__in=older)
            .exclude(status=OutboxEntry.Status.SUPERSEDED)
            .values_list("snapshot_id", flat=True)
        )
        fully_superseded = [snapshot_id for snapshot_id in older if snapshot_id not in claimed]
        Snapshot.objects.filter(id__in=fully_superseded).update(status=Snapshot.Status.SUPERSEDED)
    Snapshot.objects.filter(producer=producer, subject=subject, status=Snapshot.Status.FAILED).update(
        status=Snapshot.Status.SUPERSEDED
    )


def record_failed_snapshot(producer, subject, exc, *, dump_id, reason=""):
    """
    Keep a snapshot that could not be taken, with its error, so the publish is not lost to
    a log line: `outbox_requeue` (or the admin) takes it again.
    """
    error = "".join(traceback.format_exception(exc))[-20_000:]
    return Snapshot.objects.create(
        producer=producer,
        subject=subject,
        reason=reason,
        dump_id=dump_id,
        status=Snapshot.Status.FAILED,
        error=error,
    )
