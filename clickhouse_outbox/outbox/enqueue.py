"""
Queueing a snapshot's rows, inside the caller's transaction.

One change is a handful of statements: the updates that supersede older rows of the same
subject that no drainer has claimed yet (so ten publishes in a minute send one snapshot),
the snapshot, and its entries (one per table, split only when large), each entry's lines
compressed (`outbox.payloads`). The rows of a retired user are never queued again
(`outbox.deletes`).
"""

import logging
import traceback

from django.db import transaction

from clickhouse_outbox import conf
from clickhouse_outbox.models import Kind, OutboxEntry, Snapshot
from clickhouse_outbox.outbox.payloads import GZIP, compress
from clickhouse_outbox.serializers.encoding import chunk_lines

log = logging.getLogger(__name__)

# Payload bytes per INSERT statement: well under MariaDB's default max_allowed_packet (16 MiB).
STATEMENT_BYTES = 4 * 1024 * 1024


def enqueue(producer, snapshots, *, reason=""):
    """
    Write snapshots and their encoded rows in one transaction (the caller's, if any); returns
    a Snapshot per prepared one, in order, or None where its user is retired (nothing of a
    retired user's personal data is queued again). `snapshots` are `outbox.producers.Prepared`:
    one for a change, a chunk of subjects for a dump job, written with one INSERT of
    snapshots and as few of entries as the statement size allows.
    """
    # No savepoint of its own: inside a transaction (the change's), a failure here is the caller's.
    with transaction.atomic(savepoint=False):
        # Read inside the transaction that writes: a retirement that committed first is seen.
        retired = retired_users(producer, snapshots)
        kept = [prepared for prepared in snapshots if prepared.user_id not in retired]
        chunks = [encode(prepared) for prepared in kept]
        supersede(producer.name, {prepared.subject for prepared in kept})
        rows = [
            Snapshot(
                producer=producer.name,
                subject=prepared.subject,
                user_id=prepared.user_id,
                reason=reason,
                dump_id=prepared.dump_id,
                time_last_dumped=prepared.time_last_dumped,
                row_count=sum(count for _, count, _ in entries),
                table_rows=rows_per_table(entries),
            )
            for prepared, entries in zip(kept, chunks, strict=True)
        ]
        Snapshot.objects.bulk_create(rows)
        if any(row.pk is None for row in rows):  # MySQL returns no ids from a multi-row INSERT
            ids = dict(Snapshot.objects.filter(dump_id__in=[row.dump_id for row in rows]).values_list("dump_id", "id"))
            for row in rows:
                row.pk = ids[row.dump_id]
        write_entries(rows, chunks)
    log_queued(producer.name, rows, chunks)
    if retired:
        log.info("clickhouse_outbox: %d %s snapshots not queued: their users are retired", len(snapshots) - len(kept),
                 producer.name)
    queued = iter(rows)
    return [None if prepared.user_id in retired else next(queued) for prepared in snapshots]


def retired_users(producer, snapshots):
    """The users of `snapshots` who are retired, if the producer's rows are personal data (else none)."""
    from clickhouse_outbox.outbox.deletes import retired  # noqa: PLC0415 (deletes queues through this module)

    users = {prepared.user_id for prepared in snapshots if prepared.user_id is not None}
    if not users or not producer.pii:
        return frozenset()
    return retired(users)


def fill_requested(producer, requests, snapshots, owner):
    """
    Queue the rows of requested snapshots (CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain") into those
    very Snapshot rows, in one transaction, only while `owner` still holds every request;
    otherwise nothing is written and False is returned. The request for a retired user's
    rows is marked deleted instead of filled.
    """
    with transaction.atomic():
        retired = retired_users(producer, snapshots)
        filled = [(request, prepared, encode(prepared))
                  for request, prepared in zip(requests, snapshots, strict=True) if prepared.user_id not in retired]
        # Before the requests become queued: supersede looks for older queued snapshots.
        supersede(producer.name, {request.subject for request, _, _ in filled})
        changes = {}
        for request, prepared, entries in filled:
            request.dump_id, request.time_last_dumped = prepared.dump_id, prepared.time_last_dumped
            request.user_id, request.row_count = prepared.user_id, sum(count for _, count, _ in entries)
            changes[request.pk] = {"status": Snapshot.Status.QUEUED, "dump_id": request.dump_id,
                                   "time_last_dumped": request.time_last_dumped, "user_id": request.user_id,
                                   "row_count": request.row_count, "table_rows": rows_per_table(entries)}
        for request, prepared in zip(requests, snapshots, strict=True):
            changes.setdefault(request.pk, {"status": Snapshot.Status.DELETED, "user_id": prepared.user_id})
        for request in requests:
            done = Snapshot.objects.filter(pk=request.pk, status=Snapshot.Status.REQUESTED, lease_owner=owner).update(
                lease_owner=None, lease_expires_at=None, **changes[request.pk]
            )
            if not done:
                transaction.set_rollback(True)
                return False
        rows, chunks = [request for request, _, _ in filled], [entries for _, _, entries in filled]
        write_entries(rows, chunks)
    log_queued(producer.name, rows, chunks)
    return True


def rows_per_table(entries):
    """{table: rows} of encoded entries: what ClickHouse should hold for the snapshot's dump_id."""
    counts = {}
    for table, count, _ in entries:
        counts[table] = counts.get(table, 0) + count
    return counts


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
    # A delete is never superseded: a newer snapshot of the same subject does not undo it.
    if queued and OutboxEntry.objects.filter(
        snapshot_id__in=queued, status=OutboxEntry.Status.PENDING, kind=Kind.INSERT
    ).update(status=OutboxEntry.Status.SUPERSEDED):
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
