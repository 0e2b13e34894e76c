"""
Queueing a snapshot's rows, inside the caller's transaction.

One publish is a handful of statements: the updates that supersede older rows of the same
subject that no drainer has claimed yet (so ten publishes in a minute send one snapshot),
the snapshot, and its entries (one per table, split only when large), each entry's lines
compressed (`outbox.payloads`).
"""

import logging
import traceback

from django.db import transaction

from clickhouse_outbox import conf
from clickhouse_outbox.models import OutboxEntry, Snapshot
from clickhouse_outbox.outbox.payloads import GZIP, compress
from clickhouse_outbox.serializers.encoding import chunk_lines

log = logging.getLogger(__name__)

# Payload bytes per INSERT statement: well under MariaDB's default max_allowed_packet (16 MiB).
STATEMENT_BYTES = 4 * 1024 * 1024


def enqueue(producer, subject, rows_by_table, *, dump_id, time_last_dumped, reason=""):
    """Write a snapshot and its encoded rows; returns the Snapshot."""
    max_bytes = conf.entry_max_bytes()
    chunks = [
        (table, count, compress(payload))
        for table, lines in rows_by_table.items()
        for count, payload in chunk_lines(lines, max_bytes)
    ]
    # No savepoint of its own: inside a transaction (the publish's), a failure here is the caller's.
    with transaction.atomic(savepoint=False):
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
                OutboxEntry(snapshot=snapshot, table=table, row_count=count, payload=payload, encoding=GZIP)
                for table, count, payload in chunks
            ],
            batch_size=max(1, STATEMENT_BYTES // max(len(payload) for _, _, payload in chunks)),
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

    Every statement starts from the subject's snapshots (an index), never from the pending
    entries, so a publish costs the same whatever the backlog.
    """
    older = Snapshot.objects.filter(producer=producer, subject=subject)
    queued = older.filter(status=Snapshot.Status.QUEUED)
    retired = OutboxEntry.objects.filter(snapshot__in=queued, status=OutboxEntry.Status.PENDING).update(
        status=OutboxEntry.Status.SUPERSEDED
    )
    if retired:  # older snapshots none of whose rows was claimed are superseded as a whole
        queued.exclude(entries__status__in=[OutboxEntry.Status.BATCHED, OutboxEntry.Status.SPLIT]).update(
            status=Snapshot.Status.SUPERSEDED
        )
    older.filter(status=Snapshot.Status.FAILED).update(status=Snapshot.Status.SUPERSEDED)


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
