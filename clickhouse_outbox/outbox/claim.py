"""
Claiming a batch: a short transaction, then no lock is held while the batch is sent.

A claim names its drainer's lock (`outbox.liveness`): the batch of a drainer that died
comes back at the next claim, as soon as the database has dropped its lock. It is also a
lease that ends at `lease_expires_at`, computed by the database (`UtcNow()`): the last
resort, for a drainer that hangs while it lives or holds no lock. Any number of drainers
may claim at once. Where the database can skip locked rows (PostgreSQL, MySQL ≥ 8.0.1,
MariaDB ≥ 10.6) drainers claim with `SELECT ... FOR UPDATE SKIP LOCKED`; elsewhere
(SQLite, older MySQL) with a compare-and-swap UPDATE whose row count says who won.

A table with pending deletes is a barrier: no new batch of that table is claimed until its
deletes are, and they are claimed once no insert of the table is in flight (see
`outbox.deletes` for why that orders every delete after the inserts it must remove).

A table a whole-table dump is queuing right now waits for a full batch (`filling_tables`):
ClickHouse gets one INSERT per batch of its rows, not one per chunk the dump happened to
have queued when a drainer looked (ADR 0016).
"""

from django.db import connection, transaction
from django.db.models import F, Q

from clickhouse_outbox import conf
from clickhouse_outbox.db import UtcNow, lease_end
from clickhouse_outbox.models import Batch, DumpCursor, DumpJob, Kind, OutboxEntry, Snapshot
from clickhouse_outbox.outbox import liveness, registry

# How many entries one claim looks at; a batch stops growing at CLICKHOUSE_OUTBOX_BATCH_ROWS.
MAX_ENTRIES_PER_BATCH = 1000
# How often a compare-and-swap claim that lost a race tries again before giving up this round.
CAS_TRIES = 5


def claim_batch(owner):
    """The next batch to send, leased to `owner` (a UUID): a due retry first, else new rows."""
    from clickhouse_outbox.outbox.changes import forget  # noqa: PLC0415

    forget()  # a change after this claim, in the same transaction (a test), is queued anew
    return reclaim_due_batch(owner) or claim_new_batch(owner, tables_with_pending_deletes())


def skip_locked():
    return connection.features.has_select_for_update_skip_locked


def tables_with_pending_deletes():
    """Tables whose pending deletes go first: nothing else of theirs is claimed meanwhile."""
    return set(
        OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING, kind=Kind.DELETE)
        .values_list("table", flat=True).distinct().order_by()
    )


def filling_tables():
    """
    Tables that a dump job's cursor, leased to a live worker, is filling now and that hold
    less than a batch of pending rows: their inserts wait until a batch is full or the cursor
    is done. Every INSERT into a table partitioned by ``user_id % 100`` writes a part in each
    partition, so a chunk sent alone costs ClickHouse as much as a full batch. The wait ends
    with the cursor's lease, or as soon as its worker is gone; a cursor of a verification
    queues nothing and holds nothing back.
    """
    leased = (DumpCursor.objects.filter(job__action=DumpJob.Action.DUMP, job__active=True, finished=False,
                                        lease_owner__isnull=False, lease_expires_at__gt=UtcNow())
              .values_list("producer", "lease_owner"))
    if not (leased := list(leased)):
        return set()
    gone = liveness.abandoned({owner for _, owner in leased})
    producers = {producer.name: producer for producer in registry.all_producers()}
    tables = {table.name for name, owner in leased if owner not in gone and name in producers
              for table in producers[name].tables}
    return {table for table in tables if not batch_pending(table)}


def batch_pending(table):
    """Whether `table`'s pending inserts fill a batch (by rows, or by entries)."""
    rows = list(pending_entries().filter(table=table).order_by("id")
                .values_list("row_count", flat=True)[:MAX_ENTRIES_PER_BATCH])
    return len(rows) >= MAX_ENTRIES_PER_BATCH or sum(rows) >= conf.batch_rows()


def due_batches(abandoned=()):
    """
    Batches waiting for their retry time, claims whose lease has ended, and claims of the
    `abandoned` owners (their drainer is gone: see abandoned_owners). A table's pending
    deletes do not hold these back: they were made before the delete (no new batch of a table
    with pending deletes is claimed), they send what the delete left of them, and holding
    back the one that waits out a failure of the server would hold back everything.
    """
    due = Q(status=Batch.Status.RETRY, next_attempt_at__lte=UtcNow()) | Q(
        status=Batch.Status.CLAIMED, lease_expires_at__lte=UtcNow()
    )
    if abandoned:
        due |= Q(status=Batch.Status.CLAIMED, lease_owner__in=list(abandoned))
    return Batch.objects.filter(due)


def abandoned_owners():
    """
    Owners of batches claimed on a live lease whose drainer is gone (its lock is free): a
    plain read of the few claimed batches, then one question to the database's locks.
    """
    owners = (Batch.objects.filter(status=Batch.Status.CLAIMED, lease_expires_at__gt=UtcNow())
              .values_list("lease_owner", flat=True).distinct().order_by())
    return liveness.abandoned(set(owners))


def take_lease(queryset, owner):
    """Lease the batches of `queryset` to `owner`; returns how many rows were updated."""
    return queryset.update(
        status=Batch.Status.CLAIMED,
        lease_owner=owner,
        lease_expires_at=lease_end(),
        attempts=F("attempts") + 1,
        next_attempt_at=None,
    )


def give_up(queryset):
    """A batch whose leases keep running out (its drainer dies or hangs on it) fails for good."""
    return queryset.update(
        status=Batch.Status.FAILED,
        lease_owner=None,
        lease_expires_at=None,
        last_error="Its drainer died or hung on every attempt while sending this batch (its lock was dropped or its "
                   "lease ran out).",
        last_error_at=UtcNow(),
        http_status=None,
        error_code=None,
        server_error=False,
    )


def out_of_attempts(candidate):
    used = candidate["attempts"] - candidate["attempts_at_requeue"]
    return candidate["status"] == Batch.Status.CLAIMED and used >= conf.max_attempts()


def reclaim_due_batch(owner):
    """
    Lease the oldest due batch. Every statement goes by primary key once a row is chosen
    (SKIP LOCKED never waits), so drainers finalising their own batches never deadlock with it.
    A batch of an abandoned owner is taken on the owner it had when read (under the row lock,
    or in the compare-and-swap), so two drainers never both take it.
    """
    fields = ("id", "status", "lease_owner", "attempts", "attempts_at_requeue")
    abandoned = abandoned_owners()
    for _ in range(CAS_TRIES):
        if skip_locked():
            with transaction.atomic():
                candidate = (due_batches(abandoned).select_for_update(skip_locked=True).order_by("id")
                             .values(*fields).first())
                if candidate is None:
                    return None
                row = Batch.objects.filter(pk=candidate["id"])
                if out_of_attempts(candidate):
                    give_up(row)
                    continue
                take_lease(row, owner)
            return Batch.objects.get(pk=candidate["id"])
        candidate = due_batches(abandoned).order_by("id").values(*fields).first()
        if candidate is None:
            return None
        row = Batch.objects.filter(**candidate)  # compare-and-swap: unchanged since it was read
        if out_of_attempts(candidate):
            give_up(row)
        elif take_lease(row, owner):
            return Batch.objects.get(pk=candidate["id"])
    return None


def pending_entries(kind=Kind.INSERT):
    return OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING, kind=kind)


def batch_members(candidates):
    """The oldest candidates (id, row_count) that fill one batch (at least one entry)."""
    limit = conf.batch_rows()
    chosen, rows = [], 0
    for entry_id, row_count in candidates:
        if chosen and rows + row_count > limit:
            break
        chosen.append(entry_id)
        rows += row_count
    return chosen, rows


def server_failure():
    """
    The batch waiting to retry after a failure of the server itself (unreachable, overloaded,
    credentials refused), if any. While there is one, new rows stay pending and spend no
    attempts: that batch probes the server when it is due, and once it is sent, draining resumes.
    """
    return Batch.objects.filter(status=Batch.Status.RETRY, server_error=True).order_by("-id").first()


def claim_new_batch(owner, barred=()):
    """
    Put the oldest pending entries of one table into a new batch: a table's pending deletes
    first, once nothing of that table is in flight, else the oldest inserts of a table
    without pending deletes that a dump is not filling (`filling_tables`). The table is chosen
    by a plain read; only the entries are locked (or swapped), and a claim that finds them all
    taken by another drainer creates nothing and looks again.

    Whether a dump fills the chosen table is read after it was chosen: a chunk commits after
    its cursor's lease, so the lease of a chunk seen pending is seen too. Read before, it could
    miss a dump that claimed its cursor and queued its first chunk in between, and send that
    chunk alone.
    """
    if server_failure() is not None:
        return None
    for table in sorted(barred):
        if not insert_in_flight(table):
            batch = claim_entries(pending_entries(Kind.DELETE).filter(table=table), table, Kind.DELETE, owner)
            if batch is not None:
                return batch
    held = set(barred)
    tries = 0
    while tries < CAS_TRIES:
        inserts = pending_entries().exclude(table__in=held) if held else pending_entries()
        table = inserts.order_by("id").values_list("table", flat=True).first()
        if table is None:
            return None
        if table in (filling := filling_tables()):
            held |= filling  # each time one table more at least: the loop ends
            continue
        batch = claim_entries(pending_entries().filter(table=table), table, Kind.INSERT, owner, tries=1)
        if batch is not None:
            return batch
        tries += 1
    return None


def insert_in_flight(table):
    """An insert batch of `table` claimed on a live lease: its drainer may hold rows read before a delete."""
    return Batch.objects.filter(
        table=table, kind=Kind.INSERT, status=Batch.Status.CLAIMED, lease_expires_at__gt=UtcNow()
    ).exists()


def claim_entries(pending, table, kind, owner, tries=CAS_TRIES):
    """A new batch of the oldest of `pending` (entries of one table and kind), or None if others took them all."""
    candidates = pending.order_by("id").values_list("id", "row_count")
    for _ in range(tries):
        if skip_locked():
            with transaction.atomic():
                ids, rows = batch_members(candidates.select_for_update(skip_locked=True)[:MAX_ENTRIES_PER_BATCH])
                if kind == Kind.INSERT:
                    ids, rows = obsolete_ones_out(ids, rows)
                if not ids:
                    continue
                batch = new_batch(table, rows, owner, kind)
                OutboxEntry.objects.filter(id__in=ids).update(status=OutboxEntry.Status.BATCHED, batch=batch)
                if kind == Kind.DELETE:
                    remove_again(ids)
            return Batch.objects.get(pk=batch.pk)
        # Compare-and-swap. The candidates are read outside the transaction, which then
        # starts with a write: SQLite waits for its write lock instead of failing at once.
        ids, rows = batch_members(candidates[:MAX_ENTRIES_PER_BATCH])
        if not ids:
            continue
        with transaction.atomic():
            if kind == Kind.INSERT:
                ids, rows = obsolete_ones_out(ids, rows)
                if not ids:
                    continue
            batch = new_batch(table, rows, owner, kind)
            won = OutboxEntry.objects.filter(id__in=ids, status=OutboxEntry.Status.PENDING).update(
                status=OutboxEntry.Status.BATCHED, batch=batch
            )
            if won == 0:
                transaction.set_rollback(True)
                continue
            if won < len(ids):  # another drainer took some of them first
                rows = sum(OutboxEntry.objects.filter(batch=batch).values_list("row_count", flat=True))
                Batch.objects.filter(pk=batch.pk).update(row_count=rows)
            if kind == Kind.DELETE:
                remove_again(OutboxEntry.objects.filter(batch=batch).values_list("id", flat=True))
        return Batch.objects.get(pk=batch.pk)
    return None


def obsolete_ones_out(ids, rows):
    """
    The claimed entries less those never to be sent, checked here rather than in the request
    (decision record 0015): of a one-row producer's rows queued several times (a learner's
    profile saved in two requests), only the newest goes, the older ones are superseded; and
    rows of a user retired after they were queued (a change racing the retirement) are
    removed. Returns the ids and rows left; the entries taken out stay pending no longer.
    """
    from clickhouse_outbox.outbox import registry  # noqa: PLC0415 (the producers register on import)
    from clickhouse_outbox.outbox.deletes import remove_rows, retired  # noqa: PLC0415

    one_row = [producer.name for producer in registry.all_producers() if producer.one_row_capture]
    if not ids or not one_row:
        return ids, rows
    # By primary key, table by table: a join let SQLite's planner walk the snapshots by producer.
    entries = list(OutboxEntry.objects.filter(id__in=ids).values_list("id", "row_count", "snapshot_id"))
    snapshots = {row[0]: row[1:] for row in Snapshot.objects.filter(
        id__in={snapshot_id for _, _, snapshot_id in entries}, producer__in=one_row,
    ).values_list("id", "producer", "subject", "user_id")}
    found = [(entry_id, count, snapshot_id, *snapshots[snapshot_id])
             for entry_id, count, snapshot_id in entries if snapshot_id in snapshots]
    if len(found) < 2 and not any(user_id is not None for *_, user_id in found):
        return ids, rows
    gone_users = retired({user_id for *_, user_id in found if user_id is not None})
    newest = {}
    for _, _, snapshot_id, producer, subject, user_id in found:
        if user_id not in gone_users:
            newest[(producer, subject)] = max(snapshot_id, newest.get((producer, subject), 0))
    superseded = [row for row in found if row[5] not in gone_users and row[2] != newest[(row[3], row[4])]]
    removed = [row for row in found if row[5] in gone_users]
    if superseded:
        OutboxEntry.objects.filter(id__in=[row[0] for row in superseded], status=OutboxEntry.Status.PENDING).update(
            status=OutboxEntry.Status.SUPERSEDED)
        Snapshot.objects.filter(id__in=[row[2] for row in superseded], status=Snapshot.Status.QUEUED).update(
            status=Snapshot.Status.SUPERSEDED)
    if removed:
        remove_rows(Snapshot.objects.filter(id__in=[row[2] for row in removed]))
    out = {row[0] for row in superseded} | {row[0] for row in removed}
    if not out:
        return ids, rows
    return [entry_id for entry_id in ids if entry_id not in out], rows - sum(row[1] for row in found if row[0] in out)


def remove_again(delete_entry_ids):
    """Remove the deleted rows queued since each delete was (a dump that read them before): see outbox.deletes."""
    from clickhouse_outbox.outbox.chunk_rows import remove_user_from_chunks  # noqa: PLC0415
    from clickhouse_outbox.outbox.deletes import (  # noqa: PLC0415 (deletes uses models only)
        RETIREMENT,
        personal_data_producers,
        remove_rows,
        scope_of,
    )

    snapshot_ids = set(OutboxEntry.objects.filter(id__in=list(delete_entry_ids)).values_list("snapshot_id", flat=True))
    for snapshot in Snapshot.objects.filter(id__in=snapshot_ids):
        remove_rows(scope_of(snapshot))
        if snapshot.producer == RETIREMENT and snapshot.user_id is not None:  # chunks written while it committed
            remove_user_from_chunks(snapshot.user_id, personal_data_producers())


def new_batch(table, rows, owner, kind=Kind.INSERT):
    return Batch.objects.create(
        table=table,
        kind=kind,
        status=Batch.Status.CLAIMED,
        row_count=rows,
        attempts=1,
        lease_owner=owner,
        lease_expires_at=lease_end(),
    )
