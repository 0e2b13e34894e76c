"""
Deferred snapshots: for very large courses (CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain"), and for
the course a tag change touches.

The change's transaction writes only a `requested` Snapshot row (and retires the older
requests of the same subject no drainer has started on: ten publishes in a row make one
snapshot). The request commits if and only if the change does, as a snapshot would. The
drain takes the requests before it sends: it leases a few, reads and serializes each
subject through its producer outside any transaction, then fills in the rows of each
request in one transaction, only while it still holds the lease (a drainer that died
leaves requests that the next one takes at once, as it takes a dead drainer's batches: see
`outbox.liveness`; or, failing that, when their lease runs out). A subject that cannot be
read fails the request, kept with its traceback for `outbox_requeue --failed`, as at the change.

Learner rows (one-row producers, decision record 0015) are filled 5,000 at a time, set-based
(`fill_rows`), in one transaction that takes the requests itself where it can (`SELECT … FOR
UPDATE SKIP LOCKED`, or SQLite's write lock), no lease written: the row locks are the lease,
and die with the drainer's connection.
"""

import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from django.db import connections, transaction
from django.db.models import CharField, Q
from django.db.models.functions import Cast

from clickhouse_outbox.db import UtcNow, among, db_now, lease_end
from clickhouse_outbox.models import Snapshot
from clickhouse_outbox.outbox import fill_writes, liveness, registry
from clickhouse_outbox.outbox.claim import skip_locked
from clickhouse_outbox.outbox.enqueue import failure_text, fill_requested
from clickhouse_outbox.outbox.unchanged import row_digest, stamp, stamped
from clickhouse_outbox.serializers.encoding import dump_time
from clickhouse_outbox.sources.base import SubjectNotFound

log = logging.getLogger(__name__)

#: Requests of a one-row producer (an enrollment, a profile) a drainer fills at a time: one read,
#: one UPDATE and one multi-row INSERT for all of them.
FILL_CHUNK = 5000

#: The reason of a course requested again because its tags changed: if the course source does
#: not know the course (a deleted course kept its tags), there is nothing to update, and the
#: request is dismissed instead of failed.
TAGS_CHANGED = "tags changed"


def request_snapshot(producer, subject, reason):
    """
    Record that `subject` changed, in the caller's transaction: two or three short statements.
    The subject's requests are read first (the subject index) and those no drainer has
    started on are retired by id: an UPDATE filtered on the status let SQLite's planner take
    the status index and scan every waiting request, each time a transaction added one.
    """
    with transaction.atomic(savepoint=False):
        waiting = [row.id for row in Snapshot.objects.filter(producer=producer, subject=subject)
                   .values_list("id", "status", "lease_owner", named=True)
                   if row.status == Snapshot.Status.REQUESTED and row.lease_owner is None]
        if waiting:  # a drainer that leased one meanwhile keeps it: the UPDATE looks again
            Snapshot.objects.filter(id__in=waiting, status=Snapshot.Status.REQUESTED, lease_owner__isnull=True).update(
                status=Snapshot.Status.SUPERSEDED
            )
        return Snapshot.objects.create(producer=producer, subject=subject, reason=reason,
                                       status=Snapshot.Status.REQUESTED)


def requests_waiting():
    return Snapshot.objects.filter(status=Snapshot.Status.REQUESTED)


def claim_requests(owner, size=None, overrides=None, *, name=None):
    """
    Lease requests no live drainer holds, oldest first, all of one producer (`name`, or the
    oldest request's; a compare-and-swap): up to `size`, or as many as that producer's dump
    job takes at once (`dump_chunk`: 20 courses, 1,000 enrollments). Requests held by a
    drainer that is gone (its lock is free) count as free; the swap is on the owner read, so
    one claimer wins.
    """
    free = free_requests()
    name = name or oldest_producer(free)
    if name is None:
        return []
    ids = list(free.filter(producer=name).order_by("id").values_list("id", flat=True)[:size or chunk_size(name, overrides)])
    among(free, ids).update(lease_owner=owner, lease_expires_at=lease_end())
    taken = among(Snapshot.objects.filter(lease_owner=owner), ids).order_by("id")
    if one_row(name, overrides):  # filled set-based (fill_rows): what it needs, without a model instance each
        return list(taken.annotate(**REQUEST_TEXT).values_list(*REQUEST_FIELDS, named=True))
    return list(taken)


#: What `fill_rows` reads of each request: its dump_id as the stored text (`uuid_text`), not a UUID made of each.
REQUEST_TEXT = {"dump_text": Cast("dump_id", output_field=CharField())}
REQUEST_FIELDS = ("pk", "producer", "subject", "reason", "user_id", "dump_text")


def uuid_text(stored):
    """str() of the UUID a UUIDField stores as `stored`: PostgreSQL's uuid as text, else 32 hex digits."""
    if len(stored) == 32:
        return f"{stored[:8]}-{stored[8:12]}-{stored[12:16]}-{stored[16:20]}-{stored[20:]}"
    return stored


def free_requests():
    """Requests no live drainer holds: never leased, their lease ended, or their drainer gone (its lock free)."""
    held = requests_waiting().filter(lease_expires_at__gt=UtcNow())
    abandoned = liveness.abandoned(set(held.values_list("lease_owner", flat=True).distinct().order_by()))
    unheld = Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=UtcNow())
    if abandoned:
        unheld |= Q(lease_owner__in=list(abandoned))
    return requests_waiting().filter(unheld)


def oldest_producer(free):
    return free.order_by("id").values_list("producer", flat=True).first()


def lock_requests(free, name, size=None):
    """
    Up to `size` of the `free` requests of producer `name`, oldest first, locked by the
    caller's transaction (`SELECT … FOR UPDATE SKIP LOCKED`; on SQLite the transaction holds
    the write lock from its BEGIN IMMEDIATE): held while it fills them, with no lease written
    (an UPDATE of every request, which cost about as much as the fill's own). Locks die with
    their transaction, as a lease with its drainer; another drainer skips them (on SQLite,
    waits for the write lock, then finds them filled).
    """
    rows = free.filter(producer=name).order_by("id").select_for_update(skip_locked=True)
    return list(rows.annotate(**REQUEST_TEXT).values_list(*REQUEST_FIELDS, named=True)[:size or FILL_CHUNK])


def locks_requests(name, overrides):
    """
    Whether requests of producer `name` are taken in the transaction that fills them
    (`lock_requests`) rather than leased first: a one-row producer's, where the database
    skips locked rows, or is SQLite whose every transaction begins holding the one write lock.
    """
    return one_row(name, overrides) and (skip_locked() or single_writer())


def single_writer():
    """SQLite with `transaction_mode` IMMEDIATE (this project's settings) or EXCLUSIVE: a transaction holds every row."""
    connection = fill_writes.connection_for_outbox()
    mode = str(connection.settings_dict.get("OPTIONS", {}).get("transaction_mode") or "").upper()
    return connection.vendor == "sqlite" and mode in ("IMMEDIATE", "EXCLUSIVE")


def one_row(name, overrides):
    try:
        return ((overrides or {}).get(name) or registry.get(name)).one_row_capture
    except registry.UnknownProducer:
        return False


def chunk_size(name, overrides):
    """How many requests of producer `name` a drainer takes at a time (one for a producer not known here)."""
    try:
        producer = (overrides or {}).get(name) or registry.get(name)
    except registry.UnknownProducer:
        return 1
    if producer.one_row_capture:
        return FILL_CHUNK
    return max(1, producer.dump_chunk)


def take_requested(*, deadline=None, overrides=None, failed=None, claimer=None, threads=1):
    """
    Take requested snapshots until none is left or the `deadline` (time.monotonic()) passed;
    returns how many. `overrides` ({name: producer}) stands in for registered producers;
    `failed`, a list, gets the (producer, subject, exception) of each one that failed.
    `claimer` (outbox.liveness) is the drain run's; without one, this call takes its own lock.
    With `threads` > 1 where the database skips locked rows, as many loops fill one-row
    producers' requests at once, each its own chunks (`fill_in_threads`); one loop when a
    chunk holds every request, or when called inside a transaction (another connection would
    not see its requests).
    """
    if claimer is None:
        with liveness.claiming("a run of requested snapshots") as own:
            return take_requested(deadline=deadline, overrides=overrides, failed=failed, claimer=own, threads=threads)
    failed = [] if failed is None else failed
    if (threads > 1 and skip_locked() and not fill_writes.connection_for_outbox().in_atomic_block
            and more_than_a_chunk()):
        return fill_in_threads(threads, deadline, overrides, failed, claimer)
    return take_loop(deadline, overrides, failed, claimer)


def more_than_a_chunk():
    """Whether more requests wait than one loop fills at a time: fewer are not worth a thread and its connection."""
    return requests_waiting().order_by()[:FILL_CHUNK + 1].count() > FILL_CHUNK


def fill_in_threads(threads, deadline, overrides, failed, claimer):
    """
    One loop takes every kind of request; `threads` - 1 more fill only one-row producers'
    requests (`lock_requests`: SKIP LOCKED keeps their chunks apart; a leased claim is one
    per owner, so only the first loop makes one). Each thread has its own connection: while
    the database writes one chunk, Python reads and encodes the next.
    """
    def loop(one_row_only):
        try:
            return take_loop(deadline, overrides, failed, claimer, one_row_only=one_row_only)
        finally:
            connections.close_all()  # the thread's own connections

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="clickhouse_outbox-fill") as pool:
        taken = sum(pool.map(loop, [False] + [True] * (threads - 1)))
    # A loop leaves a producer whose free requests it found locked (by another loop, then): one
    # more pass takes what such a loop left when the last of its siblings had already ended.
    return taken + take_loop(deadline, overrides, failed, claimer)


def take_loop(deadline, overrides, failed, claimer, *, one_row_only=False):
    """
    Take requests, a chunk of one producer at a time, oldest first. A producer whose free
    requests are all locked by other drainers is left to them, and the loop goes on with the
    others' requests; `one_row_only`: only those filled in a locking transaction.
    """
    owner = claimer.owner()
    taken = 0
    busy = set()  # producers whose free requests another drainer holds locked
    while deadline is None or time.monotonic() < deadline:
        if not claimer.holds():  # its lock session was ended: leave the rest to the others
            break
        free = free_requests()
        candidates = free.exclude(producer__in=sorted(busy)) if busy else free
        if one_row_only:
            candidates = candidates.filter(producer__in=locking_producers(overrides))
        name = oldest_producer(candidates)
        if name is None:
            break
        if locks_requests(name, overrides):
            with transaction.atomic():
                requests = lock_requests(free, name)
                if requests:
                    fill_rows((overrides or {}).get(name) or registry.get(name), requests, None, db_now(), failed)
            if not requests:
                busy.add(name)
                continue
        else:
            requests = claim_requests(owner, overrides=overrides, name=name)
            if not requests:
                break
            take_producer_requests(requests[0].producer, requests, owner, db_now(), overrides or {}, failed)
        taken += len(requests)
    return taken


def locking_producers(overrides):
    """The names of the producers whose requests are taken by `lock_requests`."""
    names = set(registry.names()) | set(overrides or {})
    return sorted(name for name in names if locks_requests(name, overrides))


def take_producer_requests(name, requests, owner, now, overrides, failed):
    """Read the requested subjects of one producer and queue their rows, or record why they could not be."""
    try:
        producer = overrides.get(name) or registry.get(name)
    except registry.UnknownProducer as exc:
        record_failed_requests(requests, owner, exc, failed)
        return
    if producer.one_row_capture:
        fill_rows(producer, requests, owner, now, failed)
        return
    step = max(1, producer.read_at_once)
    prepared = []
    for start in range(0, len(requests), step):
        prepared.extend(producer.prepare([request.subject for request in requests[start:start + step]], now=now))
    read = [(request, snapshot) for request, snapshot in zip(requests, prepared, strict=True) if not snapshot.error]
    with transaction.atomic():
        if read and not fill_requested(producer, *zip(*read, strict=True), owner):
            log.warning("clickhouse_outbox: lost the lease on requested snapshots; another drainer has them")
            return
        for request, snapshot in zip(requests, prepared, strict=True):
            if snapshot.error is not None:
                record_failed_requests([request], owner, snapshot.error, failed, user_id=snapshot.user_id)


def record_failed_requests(requests, owner, exc, failed, user_id=None):
    """
    Record why requests could not be taken (each failed one added to `failed`); `user_id`
    names the user whose data the error may quote.
    """
    for request in requests:
        status = Snapshot.Status.FAILED
        if request.reason == TAGS_CHANGED and isinstance(exc, SubjectNotFound):
            status = Snapshot.Status.DISMISSED
            log.warning("clickhouse_outbox: the tags of %s changed, but the source does not know it; dismissed",
                        request.subject)
        else:
            log.error("clickhouse_outbox: could not take the requested %s snapshot of %s; recorded as failed",
                      request.producer, request.subject, exc_info=exc)
        mine = Snapshot.objects.filter(pk=request.pk)  # `owner` None: locked by the caller's transaction
        recorded = (mine if owner is None else mine.filter(lease_owner=owner)).update(
            status=status, error=failure_text(exc), user_id=user_id, lease_owner=None, lease_expires_at=None,
        )
        if recorded and status == Snapshot.Status.FAILED:
            failed.append((request.producer, request.subject, exc))


def fill_rows(producer, requests, owner, now, failed):
    """
    Fill the requests of a one-row producer (decision record 0015), set-based on plain values:
    the rows read with one query as `values_list()` tuples (`producer.rows_by_key`, its
    user's columns joined), each encoded by the producer's `values_encoder` (the bytes its
    serializer writes) with dump_id and time_last_dumped empty, hashed as the publish path
    hashes it (`row_digest`: what the sweep compares), then given its request's own dump_id
    and the drain's time; then (only while the requests are still the drainer's: leased to
    `owner`, or, with `owner` None, locked by its transaction, `lock_requests`) one UPDATE
    makes them queued with their digests and users and one statement writes their entries
    (`fill_writes`). Of several requests of the same row only the newest is filled (the older
    are superseded); a retired user's are marked deleted; an unknown row's request fails.
    """
    from clickhouse_outbox.outbox.deletes import retired  # noqa: PLC0415

    newest = {}
    for request in sorted(requests, key=lambda request: request.pk):
        newest[request.subject] = request
    older = [request.pk for request in requests if newest[request.subject] is not request]
    try:
        # In a savepoint where the requests are locked (`owner` None): a failed read spares the transaction.
        with transaction.atomic() if owner is None else contextlib.nullcontext():
            found = producer.rows_by_key([int(subject) for subject in newest])
    except Exception as exc:  # noqa: BLE001 (every request of the chunk failed the same way)
        record_failed_requests(requests, owner, exc, failed)
        return
    table = producer.table.name
    time_text = dump_time(now)
    user_at = producer.user_index
    gone = (retired({row[user_at] for row in found.values() if row[user_at] is not None})
            if producer.personal_data else frozenset())
    encode = producer.values_encoder(dump_id="", time_last_dumped="")
    snapshots, entries, deleted, missing, broken = [], [], [], [], []
    for subject, request in newest.items():
        row = found.get(subject)
        if row is None:
            missing.append(request)
            continue
        user_id = row[user_at]
        if user_id in gone:
            deleted.append(request.pk)
            continue
        try:
            emptied = encode(row)
        except Exception as exc:  # noqa: BLE001
            broken.append((request, exc, user_id))
            continue
        dump_id = uuid_text(request.dump_text)
        line = stamped(emptied, stamp(dump_id, time_text))
        if line is None:  # another layout: encoded again with the values
            line = producer.values_encoder(dump_id=dump_id, time_last_dumped=time_text)(row)
        snapshots.append((request.pk, row_digest(table, emptied), user_id))
        entries.append((request.pk, line))
    mine = requests_waiting() if owner is None else requests_waiting().filter(lease_owner=owner)
    released = {"lease_owner": None, "lease_expires_at": None}
    connection = fill_writes.connection_for_outbox()
    with transaction.atomic():
        taken = fill_writes.fill_snapshots(connection, snapshots, time_text=time_text, table=table, owner=owner)
        if taken != len(snapshots):
            transaction.set_rollback(True)
            log.warning("clickhouse_outbox: lost the lease on requested snapshots; another drainer has them")
            return
        if older:
            among(mine, older).update(status=Snapshot.Status.SUPERSEDED, **released)
        if deleted:
            among(mine, deleted).update(status=Snapshot.Status.DELETED, **released)
        fill_writes.insert_entries(connection, table, entries, now)
    log.info("clickhouse_outbox: filled %d requested %s rows (%d superseded, %d of retired users)", len(entries),
             producer.name, len(older), len(deleted))
    for request in missing:
        record_failed_requests([request], owner, SubjectNotFound(f"{producer.name} {request.subject}: no such {producer.noun[0]}"),
                               failed, user_id=request.user_id)
    for request, exc, user_id in broken:
        record_failed_requests([request], owner, exc, failed, user_id=user_id)
