"""
Capturing a learner change (an enrollment, a profile, an external id) in the platform's
transaction with as few statements as it can take: the row is serialized from the model
instance the platform just saved, and queued with two INSERTs of precompiled SQL
(`outbox.row_inserts`): the snapshot (which checks the retirement ledger as it inserts)
and its entry, in one round trip on PostgreSQL and MySQL/MariaDB (decision record 0015,
addendum). With CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain", one INSERT of a request.

What the course path does per change is moved out of the request (decision record 0015):
older unsent snapshots of the same row are superseded when a drainer claims them
(`outbox.claim`), and a row queued by a change racing a retirement is dropped there too.

A transaction that changes one row several times (the platform saves an enrollment, then
sends COURSE_ENROLLMENT_CHANGED and _CREATED) queues it once: a per-connection memo keeps
what this transaction queued for each row, and a later change of the row rewrites that
entry (one UPDATE) or, with the same rows, writes nothing. The memo is tied to the
transaction by a marker registered with `on_commit`: Django drops the marker when the
transaction, or the savepoint it was registered in, rolls back (the memo entry is then
ignored), and calls it at commit (the memo is emptied).
"""

import logging
import uuid
from dataclasses import dataclass, field

from django.db import transaction

from clickhouse_outbox import conf
from clickhouse_outbox.outbox import row_inserts
from clickhouse_outbox.models import Snapshot
from clickhouse_outbox.db import db_now
from clickhouse_outbox.outbox.enqueue import record_failed_snapshot
from clickhouse_outbox.outbox.unchanged import EMPTIED, row_digest, stamp, stamped
from clickhouse_outbox.serializers.encoding import dump_time

log = logging.getLogger(__name__)

MEMO_ATTRIBUTE = "_clickhouse_outbox_changes"


class Marker:
    """An `on_commit` callback standing for the transaction (and savepoints) it was registered in."""

    __slots__ = ("memo", "position", "sids")

    def __init__(self, memo, sids):
        self.memo, self.sids, self.position = memo, sids, -1

    def __call__(self):
        self.memo.clear()

    def alive(self, connection):
        """
        Still registered: a rollback removes the callbacks registered since its savepoint
        (a suffix of the list, the others keep their place), a commit empties the list.
        """
        hooks = connection.run_on_commit
        return self.position < len(hooks) and hooks[self.position][1] is self


@dataclass
class Queued:
    """What this transaction queued for one row."""

    marker: Marker
    snapshot_id: int
    dump_id: uuid.UUID | None = None
    time_text: str = ""
    entry_id: int | None = None
    lines: bytes = b""


@dataclass
class Memo:
    rows: dict = field(default_factory=dict)
    #: Instances the platform saved, by what its events name them with (an enrollment: user and course).
    saved: dict = field(default_factory=dict)
    marker: Marker | None = None
    #: The database's time for this transaction, where an INSERT cannot return it (MySQL).
    time_text: str = ""
    time_marker: Marker | None = None

    def clear(self):
        self.rows.clear()
        self.saved.clear()
        self.marker = self.time_marker = None
        self.time_text = ""


def memo_of(connection):
    memo = getattr(connection, MEMO_ATTRIBUTE, None)
    if memo is None:
        memo = Memo()
        setattr(connection, MEMO_ATTRIBUTE, memo)
    return memo


def forget(connection=None):
    """
    Empty the memo: a drainer run in the same transaction as changes (a test, a shell) has
    claimed what it held, so a later change of the same row must queue it again.
    """
    connection = connection or row_inserts.connection_for_outbox()
    memo = getattr(connection, MEMO_ATTRIBUTE, None)
    if memo is not None:
        memo.clear()


def current_marker(connection, memo):
    """The marker of the current transaction and savepoint, registered once for it."""
    sids = tuple(connection.savepoint_ids)
    marker = memo.marker
    if marker is not None and marker.sids == sids and marker.alive(connection):
        return marker
    marker = Marker(memo, sids)
    connection.on_commit(marker)
    marker.position = len(connection.run_on_commit) - 1
    memo.marker = marker
    return marker


def held(connection, memo, key):
    queued = memo.rows.get(key)
    if queued is not None and not queued.marker.alive(connection):
        del memo.rows[key]
        return None
    return queued


# -- what the receivers call -------------------------------------------------------------------


def row_saved(producer, instance, reason):
    """
    Queue the row of `instance` (a model row of a one-row producer, just saved) in the
    caller's transaction, or, with SNAPSHOT_AT = "drain", request it. Returns the snapshot id,
    or None when nothing was queued (its user is retired).
    """
    connection = row_inserts.connection_for_outbox()
    if not connection.in_atomic_block:  # autocommit: the snapshot and its entry still go together
        with transaction.atomic(using=connection.alias):
            return row_saved(producer, instance, reason)
    if conf.snapshot_at() == "drain":
        return request_row(producer, instance.pk, reason, user_id=producer.user_of(instance))
    return capture(connection, producer, loaded(producer, instance), reason)


def user_rows_saved(producer, instances, reason):
    """`row_saved` for each of a user's rows (their profile, their external ids) after the user changed."""
    return [row_saved(producer, instance, reason) for instance in instances]


def request_row(producer, subject, reason, *, user_id=None):
    """Ask the drain to queue the row `subject` (one INSERT); a second request in the transaction adds nothing."""
    connection = row_inserts.connection_for_outbox()
    if not connection.in_atomic_block:
        with transaction.atomic(using=connection.alias):
            return request_row(producer, subject, reason, user_id=user_id)
    subject = str(subject)
    memo = memo_of(connection)
    key = (producer.name, subject)
    queued = held(connection, memo, key)
    if queued is not None:
        return queued.snapshot_id
    inserted = row_inserts.insert_snapshot(
        connection, producer=producer.name, subject=subject, user_id=user_id, reason=reason,
        status=Snapshot.Status.REQUESTED, dump_id=uuid.uuid4(), row_count=0, table_rows={},
        time_text="", guard_user=user_id if producer.personal_data else None,
    )
    if inserted is None:
        log.info("clickhouse_outbox: %s %s not requested: its user is retired", producer.name, subject)
        return None
    memo.rows[key] = Queued(current_marker(connection, memo), inserted[0])
    return inserted[0]


def capture(connection, producer, instance, reason):
    """Serialize `instance` and queue its row: two INSERTs, an UPDATE for a row this transaction queued, or nothing."""
    memo = memo_of(connection)
    subject = str(instance.pk)
    key = (producer.name, subject)
    user_id = producer.user_of(instance)
    queued = held(connection, memo, key)
    if queued is not None and queued.entry_id is not None:
        try:
            lines = producer.serialize(instance, dump_id=queued.dump_id, time_last_dumped=queued.time_text)
        except Exception as exc:  # noqa: BLE001 (recorded, as a snapshot that could not be taken)
            return failed(producer, subject, reason, exc, user_id)
        if lines == queued.lines:
            return queued.snapshot_id
        if row_inserts.update_entry(connection, queued.entry_id, lines, 1):
            queued.lines = lines
            return queued.snapshot_id
        del memo.rows[key]  # claimed or removed meanwhile (a drain in this transaction): queue it anew
    dump_id = uuid.uuid4()
    try:  # serialized before the snapshot is written: its digest (what the sweep compares) goes in the INSERT
        emptied = producer.serialize(instance, dump_id="", time_last_dumped="")
    except Exception as exc:  # noqa: BLE001
        return failed(producer, subject, reason, exc, user_id)
    time_text = transaction_time(connection, memo) if row_inserts.needs_time(connection) else None
    guard_user = user_id if producer.personal_data else None
    digest = row_digest(producer.table.name, emptied)
    head, found, tail = emptied.partition(EMPTIED)
    if found and row_inserts.one_trip(connection):
        # One round trip: the database joins the line around the time it stores on the snapshot.
        # A JSON string holds no raw quote, so the first `"dump_id":""` is the column itself.
        head += f'"dump_id":"{dump_id}","time_last_dumped":"'.encode()
        tail = b'"' + tail
        inserted = row_inserts.insert_row(
            connection, producer=producer.name, subject=subject, user_id=user_id, reason=reason, dump_id=dump_id,
            table=producer.table.name, head=head, tail=tail, digest=digest, time_text=time_text, guard_user=guard_user,
        )
        if inserted is None:
            log.info("clickhouse_outbox: %s %s (%s) not queued: its user is retired", producer.name, subject, reason)
            return None
        snapshot_id, time_text, entry_id = inserted
        lines = head + time_text.encode() + tail
        memo.rows[key] = Queued(current_marker(connection, memo), snapshot_id, dump_id, time_text, entry_id, lines)
        return snapshot_id
    inserted = row_inserts.insert_snapshot(
        connection, producer=producer.name, subject=subject, user_id=user_id, reason=reason,
        status=Snapshot.Status.QUEUED, dump_id=dump_id, row_count=1, table_rows={producer.table.name: 1},
        time_text=time_text, guard_user=guard_user, digest=digest,
    )
    if inserted is None:
        log.info("clickhouse_outbox: %s %s (%s) not queued: its user is retired", producer.name, subject, reason)
        return None
    snapshot_id, time_text = inserted
    lines = stamped(emptied, stamp(dump_id, time_text))
    if lines is None:  # another layout: serialized again with the values
        lines = producer.serialize(instance, dump_id=dump_id, time_last_dumped=time_text)
    try:
        entry_id = row_inserts.insert_entry(connection, snapshot_id, producer.table.name, lines, 1)
    except Exception:
        row_inserts.withdraw_snapshot(connection, dump_id)
        raise
    memo.rows[key] = Queued(current_marker(connection, memo), snapshot_id, dump_id, time_text, entry_id, lines)
    return snapshot_id


def failed(producer, subject, reason, exc, user_id):
    log.error("clickhouse_outbox: could not serialize %s %s (%s); recorded as a failed snapshot", producer.name,
              subject, reason, exc_info=exc)
    return record_failed_snapshot(producer.name, subject, exc, dump_id=uuid.uuid4(), reason=reason,
                                  user_id=user_id).pk


def transaction_time(connection, memo):
    """The database's time once per transaction, where an INSERT cannot return it."""
    if memo.time_marker is None or not memo.time_marker.alive(connection):
        memo.time_text = dump_time(db_now(connection.alias))
        memo.time_marker = current_marker(connection, memo)
    return memo.time_text


def loaded(producer, instance):
    """
    `instance` with the related rows its serializer reads: those already loaded are used;
    if one is missing, the row is read again with all of them (one joined query).
    """
    if all(instance._meta.get_field(name).is_cached(instance) for name in producer.related):
        return instance
    found = producer.queryset().filter(pk=instance.pk).first()
    return instance if found is None else found


# -- instances saved before their event --------------------------------------------------------


def note_saved(key, instance):
    """
    Keep an instance the platform saved, for the event that follows it in the same
    transaction (which names the row by other fields): no statement.
    """
    connection = row_inserts.connection_for_outbox()
    if not connection.in_atomic_block:
        return
    memo = memo_of(connection)
    memo.saved[key] = Saved(current_marker(connection, memo), instance)


@dataclass
class Saved:
    """An instance `note_saved` kept, and what this transaction queued of it since that save."""

    marker: Marker
    instance: object
    row: tuple | None = None
    queued: Queued | None = None


def saved_row_changed(producer, key, reason):
    """
    The event that follows the save of a row `note_saved` kept under `key`: queue that
    instance (`row_saved`). False when none was kept in this transaction (the caller reads the
    row). A second event after the same save (the platform sends CHANGED, then CREATED) adds
    nothing and serializes nothing: the row has not been saved since it was queued, and what
    this transaction queued of it is still there (not rolled back, not claimed).
    """
    connection = row_inserts.connection_for_outbox()
    memo = getattr(connection, MEMO_ATTRIBUTE, None)
    if memo is None:
        return False
    found = memo.saved.get(key)
    if found is None or not found.marker.alive(connection):
        return False
    queued = found.queued
    if queued is not None and memo.rows.get(found.row) is queued and queued.marker.alive(connection):
        return True
    row_saved(producer, found.instance, reason)
    found.row = (producer.name, str(found.instance.pk))
    found.queued = memo.rows.get(found.row)
    return True
