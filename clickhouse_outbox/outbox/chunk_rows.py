"""
A retired user's lines taken out of the chunks of whole-table dumps (`dumps.ranges`).

A chunk's snapshot names no user (it holds thousands), so `outbox.deletes.user_scope` does
not find it. The user's keys do: the producer lists the rows of the user
(`subjects_of_user`), and the chunks whose key range holds one of them are read, their
lines of the user dropped and the rest compressed again, whatever the entry's state
(pending, in a batch, sent and kept). An open batch carrying it shrinks, and ClickHouse's
error text on it is cleared, as for any removed row.
"""

import json

from django.db.models import F, Q

from clickhouse_outbox.models import Batch, DumpChunk, Kind, OutboxEntry, Snapshot
from clickhouse_outbox.outbox.batch_errors import OPEN_BATCHES, clear_batch_errors
from clickhouse_outbox.serializers.payloads import GZIP, compress

#: The column naming a row's user in every table of personal data.
USER_COLUMN = "user_id"


def chunks_of_user(producer, user_id):
    """The snapshot ids of `producer`'s chunks whose key range holds a row of `user_id`."""
    keys = [int(key) for key in producer.subjects_of_user(user_id)]
    if not keys:
        return []
    covering = Q()
    for key in keys:
        covering |= Q(key_from__lte=key, key_to__gte=key)
    return list(DumpChunk.objects.filter(producer=producer.name).filter(covering).values_list("snapshot_id", flat=True))


def remove_user_from_chunks(user_id, producers):
    """Drop `user_id`'s lines from every chunk of `producers` holding them (in the caller's transaction); rows removed."""
    removed = 0
    for producer in producers:
        snapshot_ids = chunks_of_user(producer, user_id)
        if not snapshot_ids:
            continue
        entries = (OutboxEntry.objects.filter(snapshot_id__in=snapshot_ids, kind=Kind.INSERT)
                   .exclude(status=OutboxEntry.Status.REMOVED).select_related("batch"))
        for entry in entries:
            lines = entry.lines().splitlines(keepends=True)
            kept = [line for line in lines if not of_user(line, user_id)]
            gone = len(lines) - len(kept)
            if not gone:
                continue
            removed += gone
            changes = {"payload": compress(b"".join(kept)) if kept else b"", "encoding": GZIP if kept else "",
                       "row_count": len(kept)}
            if not kept:
                changes["status"] = OutboxEntry.Status.REMOVED
            OutboxEntry.objects.filter(pk=entry.pk).update(**changes)
            if entry.batch_id is not None:
                if entry.status == OutboxEntry.Status.BATCHED and entry.batch.status in OPEN_BATCHES:
                    Batch.objects.filter(pk=entry.batch_id).update(row_count=F("row_count") - gone)
                clear_batch_errors({entry.batch_id})
            shrink_snapshot(entry.snapshot_id, entry.table, gone)
    return removed


def of_user(line, user_id):
    """Whether a JSONEachRow line is a row of `user_id` (a cheap look at the bytes first)."""
    if str(user_id).encode() not in line:
        return False
    return json.loads(line).get(USER_COLUMN) == user_id


def shrink_snapshot(snapshot_id, table, gone):
    """The chunk's counts follow its rows: a verification expects what is left."""
    snapshot = Snapshot.objects.get(pk=snapshot_id)
    rows = dict(snapshot.table_rows or {})
    rows[table] = max(rows.get(table, 0) - gone, 0)
    Snapshot.objects.filter(pk=snapshot_id).update(row_count=max(snapshot.row_count - gone, 0), table_rows=rows)
    DumpChunk.objects.filter(snapshot_id=snapshot_id).update(rows=F("rows") - gone)
