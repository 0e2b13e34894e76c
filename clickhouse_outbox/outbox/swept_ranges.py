"""
What was last read of each range of a producer's primary keys (`SweptRange`): the range's
digest and each row's, on the grid of CLICKHOUSE_OUTBOX_SWEEP_CHUNK keys. The sweep
(`reconcile.sweep`) records what it read; a whole-table dump (`dumps.ranges`) records what it
queued, so the first sweep after a backfill finds every range unchanged instead of queuing
every row again (the rows a chunk sent have no snapshot of their own to compare with).

A row's digest is its snapshot's (`outbox.unchanged.row_digest`: the line without dump_id
and time_last_dumped); each is kept as its key and the first 8 of its 16 bytes, packed
(16 bytes a row: 80 KB for a range of 5,000), and a range's digest is of those halves. A
dump's chunk seldom ends where a range ends: the range is recorded as begun (its digest
empty, the rows so far) and completed by the chunk that ends it. A retirement takes the
user's rows out (`forget_user_rows`): no digest of their rows is kept.
"""

import hashlib
import struct

from django.db import connection

from clickhouse_outbox.db import UtcNow
from clickhouse_outbox.models import SweptRange

#: A packed row: its key (signed 64-bit, little-endian) and the first half of its digest.
ROW = struct.Struct("<q8s")
#: The half digest of a row that could not be serialized (in the range's digest: UNREADABLE).
NO_DIGEST = bytes(8)
UNREADABLE = "-"
#: The digest of a range a dump has begun and not ended yet.
BEGUN = ""


def half(digest):
    """The part of a row's hex digest kept and compared: its first 8 bytes (None: unreadable)."""
    return digest[:16] if digest else None


def range_digest(rows):
    """The digest of a range from its rows' (key, hex digest or None), in key order."""
    hasher = hashlib.blake2b(digest_size=16)
    for key, digest in rows:
        hasher.update(f"{key}:{half(digest) or UNREADABLE}\n".encode())
    return hasher.hexdigest()


def pack(rows):
    """(key, hex digest or None) rows as stored in `SweptRange.row_digests`."""
    return b"".join(ROW.pack(key, bytes.fromhex(half(digest)) if digest else NO_DIGEST) for key, digest in rows)


def unpack(blob):
    """`SweptRange.row_digests` as {key: half hex digest, or None for a row that could not be serialized}."""
    return {key: (value.hex() if value != NO_DIGEST else None) for key, value in ROW.iter_unpack(bytes(blob or b""))}


def same_row(known, key, digest):
    """Whether the row `key` with this hex `digest` is the one `known` (unpacked) recorded."""
    return digest is not None and known.get(key) == half(digest)


def record(producer_name, key_from, key_to, rows, *, queued, begun=False):
    """
    Record what was read of the range from `key_from` to `key_to` (`rows`: (key, hex digest
    or None) in key order), replacing what was recorded: the range's digest (`begun`: none
    yet, a dump has read part of it), each row's, how many rows and how many were `queued`.
    """
    upsert([recorded(producer_name, key_from, key_to, rows, queued=queued, begun=begun)])


def recorded(producer_name, key_from, key_to, rows, *, queued, begun=False):
    """The SweptRange `record` writes (unsaved)."""
    return SweptRange(producer=producer_name, key_from=key_from, key_to=key_to,
                      digest=BEGUN if begun else range_digest(rows), row_digests=pack(rows), rows=len(rows),
                      queued=queued, swept_at=UtcNow())


def upsert(swept):
    """Insert the ranges, or replace what was recorded of them: one statement (an upsert on every database)."""
    if swept:
        # MySQL and MariaDB take no conflict target: any unique key (here only this one) is the conflict.
        target = ["producer", "key_from"] if connection.features.supports_update_conflicts_with_target else None
        SweptRange.objects.bulk_create(swept, update_conflicts=True, unique_fields=target,
                                       update_fields=["key_to", "digest", "row_digests", "rows", "queued", "swept_at"])


def record_chunk(producer_name, after, key_to, rows, grid, *, last):
    """
    Record the ranges of the `grid` a dump's chunk read: it holds every row with a key above
    `after` up to `key_to` (`rows`: (key, hex digest or None) in key order; `last`, the
    table ends there). A range it begins is recorded as begun unless it ends in the chunk
    too; one an earlier chunk of the dump began goes on from that record (a range whose
    beginning no chunk recorded, a job from before, is left to the sweep to compare).
    """
    first_own = after + 1 if after else 0  # the first chunk: no key below 1 is dumped (`rows_after`)
    by_range = {}
    if after:  # the range the chunk before ended in, even if this one has no row of it: it ends here
        by_range[after - after % grid] = []
    for key, digest in rows:
        by_range.setdefault(key - key % grid, []).append((key, digest))
    swept = []
    for range_from, in_range in by_range.items():
        range_to = range_from + grid - 1
        if range_from < first_own:
            begun = SweptRange.objects.filter(producer=producer_name, key_from=range_from, digest=BEGUN).first()
            if begun is None:
                continue
            in_range = [*unpack(begun.row_digests).items(), *in_range]
        elif not in_range:
            continue
        swept.append(recorded(producer_name, range_from, range_to, in_range, queued=len(in_range),
                              begun=not (range_to <= key_to or last)))
    upsert(swept)


def forget_user_rows(producer, user_id):
    """Take `user_id`'s rows of `producer` out of the recorded row digests (a retirement, in its transaction)."""
    keys = {int(key) for key in producer.subjects_of_user(user_id)}
    if not keys:
        return
    for swept in SweptRange.objects.filter(producer=producer.name, key_from__lte=max(keys), key_to__gte=min(keys)):
        known = unpack(swept.row_digests)
        if keys & set(known):
            SweptRange.objects.filter(pk=swept.pk).update(
                row_digests=pack([(key, digest) for key, digest in known.items() if key not in keys]))
