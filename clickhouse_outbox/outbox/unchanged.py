"""
Snapshots that add nothing. The platform sends COURSE_ENROLLMENT_CHANGED then
COURSE_ENROLLMENT_CREATED for one new enrollment, saves a profile twice at registration,
and so on: a snapshot a signal takes whose rows are those of its subject's latest
snapshot, while that one is still queued and none of its rows is claimed, would only
supersede it with the same rows. It is not written; the latest snapshot sends them.

Rows are compared by a digest kept on each snapshot, of its rows without the two values
each snapshot sets (dump_id, time_last_dumped). It comes with the subject's older
snapshots that `enqueue` reads anyway to supersede them, with whether a row of each was
claimed: no statement of its own. Requeues, dumps, repairs and the drain's requested
snapshots mean "send it again" and never skip.

What is read is what committed (and this transaction's own writes): a snapshot taken in a
savepoint that rolled back is not there to skip to, and one another transaction has not
committed yet is not seen (both are then written, as before). Under MySQL's REPEATABLE READ
a transaction could read the history as it was before a newer snapshot committed, so
snapshots are skipped there only at READ COMMITTED, the isolation level Django sets.
"""

import hashlib
from collections import namedtuple

from django.db import connection
from django.db.models import Exists, OuterRef

from clickhouse_outbox.models import OutboxEntry, Snapshot


def digest(prepared, chunks):
    """
    The digest of a prepared snapshot's rows, from its (table, rows, raw lines) chunks, with
    its dump_id and time_last_dumped emptied: equal for the same rows read twice. Every
    serializer writes them as `"dump_id":"…"` and `"time_last_dumped":"…"` (JSON strings
    hold no raw quote, so the pattern only matches those two keys), side by side as the
    tables' last two columns: one pass empties both; either left (another layout) is
    emptied on its own. A table in one chunk whose emptied lines the serializer wrote as it
    went (`Prepared.emptied`) is hashed from those: the same digest, no pass to empty them.
    """
    both = f'"dump_id":"{prepared.dump_id}","time_last_dumped":"{prepared.time_last_dumped}"'.encode()
    found = (f'"dump_id":"{prepared.dump_id}"'.encode(), f'"time_last_dumped":"{prepared.time_last_dumped}"'.encode())
    emptied = (b'"dump_id":""', b'"time_last_dumped":""')
    written = prepared.emptied or {}
    hasher = hashlib.blake2b(digest_size=16)
    for table, count, lines in chunks:
        if table in written and count == len(prepared.rows[table]):
            lines = written[table]
        else:
            lines = lines.replace(both, b'"dump_id":"","time_last_dumped":""')
            for token, empty in zip(found, emptied, strict=True):
                if token in lines:
                    lines = lines.replace(token, empty)
        hasher.update(f"{table}\n{count}\n{len(lines)}\n".encode())
        hasher.update(lines)
    return hasher.hexdigest()


def row_digest(table, line):
    """
    `digest` of a one-row snapshot whose line has dump_id and time_last_dumped empty already
    (nothing left to empty): the same value, without its replaces. One-row changes store it
    (`outbox.changes`), and the sweep compares it with the source's rows.
    """
    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(f"{table}\n1\n{len(line)}\n".encode())
    hasher.update(line)
    return hasher.hexdigest()


#: A line's dump_id and time_last_dumped, emptied: the two last columns of every learner table.
EMPTIED = b'"dump_id":"","time_last_dumped":""'


def stamp(dump_id, time_last_dumped):
    """What replaces EMPTIED in a line given its snapshot's dump_id and time (`stamped`)."""
    return f'"dump_id":"{dump_id}","time_last_dumped":"{time_last_dumped}"'.encode()


def stamped(emptied, values):
    """
    The line `emptied` with `values` (`stamp`) in place of its empty dump_id and time, or None
    for a line of another layout (the caller encodes it again with them). A JSON string holds
    no raw quote: the first `"dump_id":""` is the column itself.
    """
    line = emptied.replace(EMPTIED, values, 1)
    return None if line == emptied else line


def history(producer, subjects, *, claims=False):
    """
    The subjects' snapshots, newest first, by the subject index (a status in the filter can
    make a planner prefer the status index and scan every pending snapshot): id, subject
    and status; with `claims`, Snapshot rows that also have their digest and `claimed`,
    whether any of their entries left `pending`.
    """
    if not claims:
        return subject_snapshots(producer, subjects)
    rows = Snapshot.objects.filter(producer=producer, subject__in=subjects).order_by("-id")
    taken = OutboxEntry.objects.filter(snapshot=OuterRef("pk")).exclude(status=OutboxEntry.Status.PENDING)
    return list(rows.only("id", "producer", "subject", "status", "digest", "dump_id").annotate(claimed=Exists(taken)))


Row = namedtuple("Row", "id subject status")


def subject_snapshots(producer, subjects):
    """
    `history` without claims, as SQL: the ORM took longer to build this query (about 0.7 ms)
    than the database to answer it, inside every publish (decision record 0018).
    """
    subjects = list(subjects)
    if not subjects:
        return []
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote('id')}, {quote('subject')}, {quote('status')} FROM {quote(Snapshot._meta.db_table)}"
            f" WHERE {quote('producer')} = %s AND {quote('subject')} IN ({', '.join(['%s'] * len(subjects))})"
            f" ORDER BY {quote('id')} DESC",
            [producer, *subjects],
        )
        return [Row(*row) for row in cursor.fetchall()]


def unchanged(older, prepared, digests):
    """{subject: its latest snapshot} for each prepared snapshot that would add nothing to it."""
    if not reads_committed():
        return {}
    latest = {}
    for row in older:  # newest first
        latest.setdefault(row.subject, row)
    same = {}
    for snapshot, rows_digest in zip(prepared, digests, strict=True):
        row = latest.get(snapshot.subject)
        if row is not None and row.status == Snapshot.Status.QUEUED and not row.claimed and row.digest == rows_digest:
            same[snapshot.subject] = row
    return same


def reads_committed():
    """Whether each statement reads what committed before it: SQLite (one writer), MySQL only at READ COMMITTED."""
    return connection.vendor != "mysql" or getattr(connection, "isolation_level", None) == "read committed"
