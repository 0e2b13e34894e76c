"""
Queueing a snapshot's rows, inside the caller's transaction.

One change is a handful of statements: the updates that supersede older rows of the same
subject that no drainer has claimed yet (so ten publishes in a minute send one snapshot),
the snapshot, and its entries (one per table, split only when large), each entry's lines
compressed (`serializers.payloads`). A signal's snapshot with the rows of its subject's latest,
unsent one is not written at all (`outbox.unchanged`). The rows of a retired user are never
queued again (`outbox.deletes`).
"""

import logging
import traceback

from django.db import connection, transaction

from clickhouse_outbox import conf
from clickhouse_outbox.models import Kind, OutboxEntry, Snapshot
from clickhouse_outbox.outbox.inserts import insert_entries
from clickhouse_outbox.outbox.unchanged import digest, history, unchanged
from clickhouse_outbox.serializers.encoding import chunk_lines
from clickhouse_outbox.serializers.payloads import GZIP, compress

log = logging.getLogger(__name__)

# Payload bytes per INSERT statement: well under MariaDB's default max_allowed_packet (16 MiB).
STATEMENT_BYTES = 4 * 1024 * 1024
#: Requests one CASE UPDATE fills in: each row's CASE is read through, so its cost grows as the square.
UPDATE_ROWS = 200
#: What filling in a request sets (its lease is cleared by the compare-and-swap before).
FILLED_FIELDS = ("status", "dump_id", "time_last_dumped", "user_id", "row_count", "table_rows", "digest")


def enqueue(producer, snapshots, *, reason="", skip_unchanged=False):
    """
    Write snapshots and their encoded rows in one transaction (the caller's, if any); returns
    a Snapshot per prepared one, in order, or None where its user is retired (nothing of a
    retired user's personal data is queued again). `snapshots` are `outbox.producers.Prepared`:
    one for a change, a chunk of subjects for a dump job, written with one INSERT of
    snapshots and as few of entries as the statement size allows. With `skip_unchanged` (a
    signal's snapshot), one that would add nothing to its subject's latest snapshot is not
    written and that snapshot is returned instead (see `outbox.unchanged`).
    """
    # No savepoint of its own: inside a transaction (the change's), a failure here is the caller's.
    with transaction.atomic(savepoint=False):
        # Read inside the transaction that writes: a retirement that committed first is seen.
        retired = retired_users(producer, snapshots)
        kept = [prepared for prepared in snapshots if prepared.user_id not in retired]
        chunks = [chunk(prepared) for prepared in kept]
        digests = [digest(prepared, lines) for prepared, lines in zip(kept, chunks, strict=True)]
        older = history(producer.name, {prepared.subject for prepared in kept}, claims=skip_unchanged)
        same = unchanged(older, kept, digests) if skip_unchanged else {}
        new = [(prepared, compressed(lines), rows_digest)
               for prepared, lines, rows_digest in zip(kept, chunks, digests, strict=True) if prepared.subject not in same]
        supersede([row for row in older if row.subject not in same])
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
                digest=rows_digest,
            )
            for prepared, entries, rows_digest in new
        ]
        Snapshot.objects.bulk_create(rows)
        if any(row.pk is None for row in rows):  # MySQL returns no ids from a multi-row INSERT
            ids = dict(Snapshot.objects.filter(dump_id__in=[row.dump_id for row in rows]).values_list("dump_id", "id"))
            for row in rows:
                row.pk = ids[row.dump_id]
        write_entries(rows, [entries for _, entries, _ in new])
    log_queued(producer.name, rows, [entries for _, entries, _ in new])
    for subject, latest in same.items():
        log.debug("clickhouse_outbox: %s snapshot of %s (%s) not queued: the same rows as snapshot %s, not sent yet",
                  producer.name, subject, reason or "-", latest.dump_id)
    if retired:
        log.info("clickhouse_outbox: %d %s snapshots not queued: their users are retired", len(snapshots) - len(kept),
                 producer.name)
    queued = iter(rows)
    return [None if prepared.user_id in retired else same.get(prepared.subject) or next(queued)
            for prepared in snapshots]


def retired_users(producer, snapshots):
    """
    The users of `snapshots` who are retired, if the producer's rows are personal data (else
    none): whatever EVENT_SINK_CLICKHOUSE_PII_MODELS says, nothing of theirs is queued again.
    """
    from clickhouse_outbox.outbox.deletes import retired  # noqa: PLC0415 (deletes queues through this module)

    users = {prepared.user_id for prepared in snapshots if prepared.user_id is not None}
    if not users or not producer.personal_data:
        return frozenset()
    return retired(users)


def fill_requested(producer, requests, snapshots, owner):
    """
    Queue the rows of requested snapshots (CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain") into those
    very Snapshot rows, in one transaction, only while `owner` still holds every request;
    otherwise nothing is written and False is returned. The request for a retired user's
    rows is marked deleted instead of filled. A few statements however many requests: one
    UPDATE takes them back from the lease (the compare-and-swap), CASE UPDATEs by primary
    key set each one's values.
    """
    with transaction.atomic():
        retired = retired_users(producer, snapshots)
        filled = []
        for request, prepared in zip(requests, snapshots, strict=True):
            request.user_id = prepared.user_id
            if prepared.user_id in retired:
                request.status = Snapshot.Status.DELETED
                continue
            lines = chunk(prepared)
            entries = compressed(lines)
            request.status = Snapshot.Status.QUEUED
            request.dump_id, request.time_last_dumped = prepared.dump_id, prepared.time_last_dumped
            request.row_count, request.table_rows = sum(count for _, count, _ in entries), rows_per_table(entries)
            request.digest = digest(prepared, lines)
            filled.append((request, entries))
        held = Snapshot.objects.filter(
            pk__in=[request.pk for request in requests], status=Snapshot.Status.REQUESTED, lease_owner=owner
        ).update(lease_owner=None, lease_expires_at=None)
        if held != len(requests):
            transaction.set_rollback(True)
            return False
        # Before the requests become queued: supersede looks for older queued snapshots.
        supersede(history(producer.name, {request.subject for request, _ in filled}))
        Snapshot.objects.bulk_update(requests, FILLED_FIELDS, batch_size=UPDATE_ROWS)
        rows, chunks = [request for request, _ in filled], [entries for _, entries in filled]
        write_entries(rows, chunks)
    log_queued(producer.name, rows, chunks)
    return True


def rows_per_table(entries):
    """{table: rows} of encoded entries: what ClickHouse should hold for the snapshot's dump_id."""
    counts = {}
    for table, count, _ in entries:
        counts[table] = counts.get(table, 0) + count
    return counts


def chunk(prepared):
    """A prepared snapshot's lines as (table, row count, raw lines) entries, split where large."""
    return [
        (table, count, lines)
        for table, table_lines in prepared.rows.items()
        for count, lines in chunk_lines(table_lines, conf.entry_max_bytes())
    ]


def compressed(chunks):
    """Entries as they are stored: (table, row count, gzip payload)."""
    return [(table, count, compress(lines)) for table, count, lines in chunks]


def write_entries(rows, chunks):
    entries = [
        OutboxEntry(snapshot=row, table=table, row_count=count, payload=payload, encoding=GZIP)
        for row, row_entries in zip(rows, chunks, strict=True)
        for table, count, payload in row_entries
    ]
    insert_entries(entries, statement_bytes=STATEMENT_BYTES)


def log_queued(producer, rows, chunks):
    for row, row_entries in zip(rows, chunks, strict=True):
        log.info(
            "clickhouse_outbox: queued %s snapshot %s of %s (%s): %d rows in %d entries",
            producer, row.dump_id, row.subject, row.reason or "-", row.row_count, len(row_entries),
        )


def supersede(older):
    """
    Retire what new snapshots make obsolete, given their subjects' older snapshots (`history`):
    pending entries of older snapshots (never claimed, so never sent) and older snapshots
    that could not be taken.

    It starts from the subjects' snapshots (the subject index, ids read first so no planner
    can prefer a status index), then their entries by snapshot and status: a publish costs
    the same whatever the backlog. Scanning pending entries instead made SQLite read every
    pending payload's overflow pages on each publish. Two statements at most: the entries,
    then the snapshots (failed ones, and queued ones none of whose entries is left).
    """
    queued = [row.id for row in older if row.status == Snapshot.Status.QUEUED]
    failed = [row.id for row in older if row.status == Snapshot.Status.FAILED]
    # Written as SQL: the ORM took longer to build these two statements (about 2 ms) than
    # the database to run them, inside every publish (decision record 0018).
    quote = connection.ops.quote_name
    entries, snapshots = quote(OutboxEntry._meta.db_table), quote(Snapshot._meta.db_table)
    retired, params = [], []
    if failed:
        retired.append(f"{snapshots}.{quote('id')} IN ({marks(failed)})")
        params += failed
    with connection.cursor() as cursor:
        # A delete is never superseded: a newer snapshot of the same subject does not undo it.
        if queued:
            cursor.execute(
                f"UPDATE {entries} SET {quote('status')} = %s WHERE {quote('snapshot_id')} IN ({marks(queued)})"
                f" AND {quote('status')} = %s AND {quote('kind')} = %s",
                [OutboxEntry.Status.SUPERSEDED.value, *queued, OutboxEntry.Status.PENDING.value, Kind.INSERT.value],
            )
            if cursor.rowcount:
                # Older snapshots none of whose rows was claimed are superseded as a whole.
                retired.append(
                    f"({snapshots}.{quote('id')} IN ({marks(queued)}) AND NOT EXISTS (SELECT 1 FROM {entries}"
                    f" WHERE {entries}.{quote('snapshot_id')} = {snapshots}.{quote('id')}"
                    f" AND {entries}.{quote('status')} <> %s))"
                )
                params += [*queued, OutboxEntry.Status.SUPERSEDED.value]
        if retired:
            cursor.execute(f"UPDATE {snapshots} SET {quote('status')} = %s WHERE {' OR '.join(retired)}",
                           [Snapshot.Status.SUPERSEDED.value, *params])


def marks(values):
    """One placeholder per value."""
    return ", ".join(["%s"] * len(values))


def record_failed_snapshot(producer, subject, exc, *, dump_id, reason="", user_id=None):
    """
    Keep a snapshot that could not be taken, with its error, so the publish is not lost to
    a log line: `outbox_requeue` (or the admin) takes it again. `user_id` names the user
    whose data the subject holds: the error may quote it, and a retirement clears it.
    """
    return Snapshot.objects.create(
        producer=producer,
        subject=subject,
        user_id=user_id,
        reason=reason,
        dump_id=dump_id,
        status=Snapshot.Status.FAILED,
        error=failure_text(exc),
    )


def failure_text(exc):
    """The traceback kept with a snapshot that could not be taken (its end, where the cause is)."""
    return "".join(traceback.format_exception(exc))[-20_000:]
