"""
Deletes: a retired user's rows, and a deleted subject's (a tag, a taxonomy, an object tag),
taken out of ClickHouse and out of the outbox's own copies, in order with their inserts.

In the transaction of the change (the retirement, the delete):

1. `remove_rows`: every stored copy of the rows (pending, in a batch, sent and kept for the
   retention period, superseded, split, failed) is emptied (`OutboxEntry.Status.REMOVED`),
   and the open batches that carried them shrink: a later attempt of any of them sends the
   other rows only. For a retirement that is every snapshot of every producer of personal
   data that names the user (`user_scope`), whatever EVENT_SINK_CLICKHOUSE_PII_MODELS says,
   and the text that may quote their data goes too: a failed snapshot's error, a dump
   subject's error, and ClickHouse's error on the batches that carried their rows (and the
   batches those were split from). The chunks of whole-table dumps holding their rows lose
   those lines (`outbox.chunk_rows`), and the row digests the sweep keeps lose theirs
   (`outbox.swept_ranges`). So the database keeps none of the user's data, only ids;
2. a delete entry per table: `ALTER TABLE t DELETE WHERE column IN (values)` once sent (for
   a retirement, each table of EVENT_SINK_CLICKHOUSE_PII_MODELS, while retirement is on).

A drainer sends a table's pending deletes before anything else of that table, and only once
no insert batch of that table is in flight (claimed on a live lease: its drainer may have
read the rows before they were removed). No batch is claimed while ClickHouse itself is
failing, so a delete also waits out a batch whose last attempt timed out and may still land.
Every copy of the rows that could reach ClickHouse has landed before the delete, then;
ClickHouse applies a mutation to the parts that exist when it is created, not to later
inserts, so rows queued after the delete are kept. Claiming the delete removes the rows
once more (rows a dump read before the retirement and wrote after), and a retired user's
rows are never queued again (`enqueue`).
"""

import json
import logging

from django.db import transaction
from django.db.models import F, Q, Sum

from clickhouse_outbox import conf
from clickhouse_outbox.clickhouse.tables import all_tables
from clickhouse_outbox.db import among
from clickhouse_outbox.models import Batch, DumpJobItem, Kind, OutboxEntry, Snapshot
from clickhouse_outbox.outbox import registry
from clickhouse_outbox.outbox.batch_errors import OPEN_BATCHES, clear_batch_errors
from clickhouse_outbox.outbox.chunk_rows import remove_user_from_chunks
from clickhouse_outbox.outbox.swept_ranges import forget_user_rows

log = logging.getLogger(__name__)

#: The producer name of retirement snapshots; platform-plugin-aspects calls its sink auth_user.
RETIREMENT = "user_retirement"
RETIREMENT_PEER_MODEL = "auth_user"
#: The column a retirement deletes by, in every PII table.
USER_COLUMN = "user_id"
#: Batch states whose bytes may still be sent: they shrink when rows are removed from them.
def retired(user_ids):
    """The users among `user_ids` who have been retired (their retirement is recorded for good)."""
    ledger = Snapshot.objects.filter(producer=RETIREMENT)
    return frozenset(int(subject) for subject in among(ledger, user_ids, "subject", as_text=True)
                     .values_list("subject", flat=True))


def pii_producers():
    """The producers whose tables are in EVENT_SINK_CLICKHOUSE_PII_MODELS: a retirement deletes their rows in ClickHouse."""
    return [producer for producer in registry.all_producers() if producer.pii]


def personal_data_producers():
    """The producers whose rows carry personal data: a retirement removes their rows from the outbox."""
    return [producer for producer in registry.all_producers() if producer.personal_data]


def retirement_enabled():
    """
    Whether a retirement deletes the user's rows from ClickHouse: CLICKHOUSE_OUTBOX_USER_RETIREMENT_ENABLED
    when set; else whenever a PII producer is on, or the peer's retirement sink switch
    (EVENT_SINK_CLICKHOUSE_AUTH_USER_ENABLED, its waffle flag) is. The outbox's own copies
    of the user's data are removed whatever this says (`retire_user`).
    """
    if not conf.enabled():
        return False
    own = conf.producer_switch(RETIREMENT)  # a value that is not a boolean reads as off, as for every producer
    if own is not None:
        return own
    return any(producer.enabled for producer in pii_producers()) or conf.peer_enabled(RETIREMENT_PEER_MODEL)


def retirement_tables():
    """The tables a retirement deletes from: EVENT_SINK_CLICKHOUSE_PII_MODELS entries that are tables (not auth_user)."""
    known = {table.name for table in all_tables()}
    return [name for name in conf.pii_tables() if name in known]


def retire_user(user_id, *, reason="retired"):
    """
    Remove a user's personal data from the outbox and, while retirement is on
    (`retirement_enabled`), queue the deletion of their rows from every PII table, in the
    caller's transaction. Returns the retirement snapshot: the record (ids only) that keeps
    their rows from being queued again.
    """
    user_id = int(user_id)
    tables = retirement_tables() if retirement_enabled() else []
    with transaction.atomic(savepoint=False):
        producers = personal_data_producers()
        removed = remove_rows(user_scope(user_id)) + remove_user_from_chunks(user_id, producers)
        for producer in producers:  # the digests of their rows the sweep kept
            forget_user_rows(producer, user_id)
        snapshot = queue_deletes(
            RETIREMENT, str(user_id), [(table, USER_COLUMN, [user_id]) for table in tables],
            reason=reason, user_id=user_id,
        )
    log.info("clickhouse_outbox: user %s retired: deletes queued for %s; %d stored rows removed from the outbox",
             user_id, ", ".join(tables) or "no table (retirement is off)", removed)
    return snapshot


def delete_subject(producer, subject, *, reason="deleted"):
    """
    Queue the deletion of a deleted subject's rows (what `producer.deleted` names) and remove
    them from the outbox, in the caller's transaction. Returns the delete snapshot, or None
    when the producer keeps the rows of deleted subjects.
    """
    targets = producer.deleted(subject)
    if not targets:
        return None
    with transaction.atomic(savepoint=False):
        remove_rows(Snapshot.objects.filter(producer=producer.name, subject=subject))
        snapshot = queue_deletes(producer.name, subject, targets, reason=reason)
    log.info("clickhouse_outbox: %s %s deleted: deletes queued for %s", producer.name, subject,
             ", ".join(table for table, _, _ in targets))
    return snapshot


def queue_deletes(producer_name, subject, targets, *, reason, user_id=None):
    """A snapshot holding one delete entry per (table, column, values) target."""
    snapshot = Snapshot.objects.create(
        producer=producer_name, subject=subject, user_id=user_id, reason=reason, row_count=len(targets)
    )
    OutboxEntry.objects.bulk_create([
        OutboxEntry(snapshot=snapshot, table=table, kind=Kind.DELETE, row_count=len(values),
                    payload=delete_payload(column, values))
        for table, column, values in targets
    ])
    return snapshot


def delete_payload(column, values):
    return json.dumps({"column": column, "values": list(values)}, separators=(",", ":")).encode()


def parse_delete(payload):
    """(column, values) of a delete entry's payload."""
    data = json.loads(bytes(payload))
    return data["column"], data["values"]


def user_scope(user_id):
    """
    The snapshots holding a user's personal data: those of producers of personal data that
    name the user, or whose subject is one of the user's rows (a snapshot that failed before
    snapshots named their user, a request not taken yet).
    """
    personal = personal_data_producers()
    scope = Q(user_id=user_id, producer__in=[producer.name for producer in personal])
    for producer in personal:
        subjects = producer.subjects_of_user(user_id)
        if subjects:
            scope |= Q(producer=producer.name, subject__in=subjects)
    return Snapshot.objects.filter(scope)


def scope_of(delete_snapshot):
    """The snapshots whose rows a delete snapshot removes (again, when a drainer claims it)."""
    if delete_snapshot.producer == RETIREMENT:
        return user_scope(delete_snapshot.user_id)
    return Snapshot.objects.filter(producer=delete_snapshot.producer, subject=delete_snapshot.subject).exclude(
        pk=delete_snapshot.pk
    )


def remove_rows(snapshots):
    """
    Empty every insert entry of `snapshots` (whatever its state) and shrink the open batches
    that carry them; the snapshots become `deleted`, without their error or digest. Returns
    how many rows were removed. Locking the batches' rows (the UPDATE) keeps a drainer from
    claiming one of them again until this transaction ends: any later attempt reads the
    entries without the rows. The text that may quote the rows goes too: the errors of the
    dump subjects that read them, and ClickHouse's error on every batch that carried them
    (`clear_batch_errors`).
    """
    snapshot_ids = list(snapshots.values_list("id", flat=True))
    if not snapshot_ids:
        return 0
    entries = OutboxEntry.objects.filter(snapshot_id__in=snapshot_ids, kind=Kind.INSERT).exclude(
        status=OutboxEntry.Status.REMOVED
    )
    shrinking = (
        entries.filter(status=OutboxEntry.Status.BATCHED, batch__status__in=OPEN_BATCHES)
        .values("batch_id").annotate(rows=Sum("row_count")).order_by("batch_id")
    )
    for row in shrinking:
        Batch.objects.filter(pk=row["batch_id"]).update(row_count=F("row_count") - row["rows"])
    clear_batch_errors(set(OutboxEntry.objects.filter(snapshot_id__in=snapshot_ids, batch__isnull=False)
                           .values_list("batch_id", flat=True)))
    removed = entries.aggregate(rows=Sum("row_count"))["rows"] or 0
    entries.update(status=OutboxEntry.Status.REMOVED, payload=b"", encoding="", row_count=0)
    Snapshot.objects.filter(id__in=snapshot_ids).exclude(status=Snapshot.Status.DELETED, error="", digest="").update(
        status=Snapshot.Status.DELETED, error="", digest=""
    )
    DumpJobItem.objects.filter(snapshot_id__in=snapshot_ids).exclude(error="").update(error="")
    return removed
