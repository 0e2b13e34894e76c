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


def enqueue(producer, snapshots, *, reason=""):
    """
    Write snapshots and their encoded rows in one transaction (the caller's, if any); returns
    the Snapshots, in order. `snapshots` have `subject`, `rows` (lines per table), `dump_id`
    and `time_last_dumped` (see `producers.course_structure.PreparedSnapshot`): one for a
    publish, a chunk of courses for a dump job, written with one INSERT of snapshots and as
    few of entries as the statement size allows.
    """
    chunks = [encode(prepared) for prepared in snapshots]
    # No savepoint of its own: inside a transaction (the publish's), a failure here is the caller's.
    with transaction.atomic(savepoint=False):
        supersede(producer, {prepared.subject for prepared in snapshots})
        rows = [
            Snapshot(
                producer=producer,
                subject=prepared.subject,
                reason=reason,
                dump_id=prepared.dump_id,
                time_last_dumped=prepared.time_last_dumped,
                row_count=sum(count for _, count, _ in entries),
            )
            for prepared, entries in zip(snapshots, chunks, strict=True)
        ]
        Snapshot.objects.bulk_create(rows)
        if any(row.pk is None for row in rows):  # MySQL returns no ids from a multi-row INSERT
            ids = dict(Snapshot.objects.filter(dump_id__in=[row.dump_id for row in rows]).values_list("dump_id", "id"))
            for row in rows:
                row.pk = ids[row.dump_id]
        write_entries(rows, chunks)
    log_queued(producer, rows, chunks)
    return rows


def fill_requested(producer, requests, snapshots, owner):
    """
    Queue the rows of requested snapshots (CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain") into those
    very Snapshot rows, in one transaction, only while `owner` still holds every request;
    otherwise nothing is written and False is returned.
    """
    chunks = [encode(prepared) for prepared in snapshots]
    with transaction.atomic():
        supersede(producer, {request.subject for request in requests})
        for request, prepared, entries in zip(requests, snapshots, chunks, strict=True):
            request.dump_id, request.time_last_dumped = prepared.dump_id, prepared.time_last_dumped
            request.row_count = sum(count for _, count, _ in entries)
            filled = Snapshot.objects.filter(
                pk=request.pk, status=Snapshot.Status.REQUESTED, lease_owner=owner
            ).update(
                status=Snapshot.Status.QUEUED, dump_id=request.dump_id, time_last_dumped=request.time_last_dumped,
                row_count=request.row_count, lease_owner=None, lease_expires_at=None,
            )
            if not filled:
                transaction.set_rollback(True)
                return False
        write_entries(requests, chunks)
    log_queued(producer, requests, chunks)
    return True


def encode(prepared):
    """A prepared snapshot's lines as (table, row count, gzip payload) entries, split where large."""
    return [
        (table, count, compress(payload))
        for table, lines in prepared.rows.items()
        for count, payload in chunk_lines(lines, conf.entry_max_bytes())
    ]


def write_entries(rows, chunks):
    entries = [
        OutboxEntry(snapshot=row, table=table, row_count=count, payload=payload, encoding=GZIP)
        for row, row_entries in zip(rows, chunks, strict=True)
        for table, count, payload in row_entries
    ]
    largest = max((len(entry.payload) for entry in entries), default=1)
    OutboxEntry.objects.bulk_create(entries, batch_size=max(1, STATEMENT_BYTES // largest))


def log_queued(producer, rows, chunks):
    for row, row_entries in zip(rows, chunks, strict=True):
        log.info(
            "clickhouse_outbox: queued %s snapshot %s of %s (%s): %d rows in %d entries",
            producer, row.dump_id, row.subject, row.reason or "-", row.row_count, len(row_entries),
        )


def supersede(producer, subjects):
    """
    Retire what new snapshots of `subjects` make obsolete: pending entries of older
    snapshots (never claimed, so never sent) and older snapshots that could not be taken.

    It starts from the subjects' snapshots (the subject index, ids read first so no planner
    can prefer a status index), then their entries by snapshot and status: a publish costs
    the same whatever the backlog. Scanning pending entries instead made SQLite read every
    pending payload's overflow pages on each publish.
    """
    older = list(Snapshot.objects.filter(producer=producer, subject__in=subjects).values_list("id", "status"))
    queued = [snapshot_id for snapshot_id, status in older if status == Snapshot.Status.QUEUED]
    failed = [snapshot_id for snapshot_id, status in older if status == Snapshot.Status.FAILED]
    if queued and OutboxEntry.objects.filter(snapshot_id__in=queued, status=OutboxEntry.Status.PENDING).update(
        status=OutboxEntry.Status.SUPERSEDED
    ):
        # Older snapshots none of whose rows was claimed are superseded as a whole.
        claimed = set(
            OutboxEntry.objects.filter(snapshot_id__in=queued)
            .exclude(status=OutboxEntry.Status.SUPERSEDED)
            .values_list("snapshot_id", flat=True)
        )
        failed += [snapshot_id for snapshot_id in queued if snapshot_id not in claimed]
    if failed:
        Snapshot.objects.filter(id__in=failed).update(status=Snapshot.Status.SUPERSEDED)


def record_failed_snapshot(producer, subject, exc, *, dump_id, reason=""):
    """
    Keep a snapshot that could not be taken, with its error, so the publish is not lost to
    a log line: `outbox_requeue` (or the admin) takes it again.
    """
    return Snapshot.objects.create(
        producer=producer,
        subject=subject,
        reason=reason,
        dump_id=dump_id,
        status=Snapshot.Status.FAILED,
        error=failure_text(exc),
    )


def failure_text(exc):
    """The traceback kept with a snapshot that could not be taken (its end, where the cause is)."""
    return "".join(traceback.format_exception(exc))[-20_000:]
