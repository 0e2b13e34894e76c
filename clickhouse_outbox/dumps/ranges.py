"""
Whole-table dumps by key range: the learner tables (enrollments, profiles, external ids)
come in millions, so a dump of all of them lists nothing. A job keeps a cursor per producer
(`DumpCursor`: the last key queued) and a worker walks the table from it, a chunk at a time:

1. read the next CLICKHOUSE_OUTBOX_BACKFILL_CHUNK_ROWS keys after the cursor: where the
   range ends, by the primary key's index alone; then the range's rows with one
   `.values_list()` query (joins for usernames; the rows of retired users left out by the
   query), outside any transaction (`ModelRowProducer.rows_after`);
2. encode them as JSONEachRow lines sharing one dump_id (derived from the job, producer and
   key range, so it is the same whoever reads the range) with a line template compiled once
   for the chunk (`serializers.lines`), and compress them;
3. in one transaction: advance the cursor past the range, only while this worker still holds
   it at the key it read from (a compare-and-swap), and write one Snapshot, one OutboxEntry
   holding every line and one DumpChunk naming the range. Lines of users retired since the
   read are dropped first.

A worker killed at any point leaves either the chunk queued and the cursor past it, or
neither: the next worker (its lock is gone: `outbox.liveness`) reads the range again. Each
range is queued once per job, and the drain sends its entry in one INSERT whose batch keeps
its deduplication token on every resend. Memory holds one chunk, whatever the table's size.
A retirement after the chunk was queued takes the user's lines out of it (`outbox.chunk_rows`).
"""

import logging
import time
import uuid
from datetime import timedelta

from django.db import transaction
from django.db.models import F, Q

from clickhouse_outbox import conf
from clickhouse_outbox.models import DumpChunk, DumpCursor, DumpJob, Kind, OutboxEntry, Snapshot
from clickhouse_outbox.outbox import liveness, swept_ranges
from clickhouse_outbox.db import UtcNow, db_now, lease_end
from clickhouse_outbox.outbox.deletes import RETIREMENT
from clickhouse_outbox.outbox.enqueue import record_failed_snapshot
from clickhouse_outbox.outbox.unchanged import row_digest, stamp, stamped
from clickhouse_outbox.serializers.payloads import GZIP, compress
from clickhouse_outbox.serializers.encoding import dump_time

log = logging.getLogger(__name__)

#: The snapshot reason of a chunk.
REASON = "backfill"
#: The namespace of chunks' dump_ids (uuid5 of job, producer and key range).
CHUNK_NAMESPACE = uuid.UUID("5f0c7a52-61b6-4d0e-9c51-8d0f2b7f8e11")
#: Retirements this long before a chunk's read are looked at again when it is written (clocks
#: of the machines that wrote them differ; those older were left out by the read itself).
RETIRED_MARGIN = timedelta(minutes=10)


#: How a job of another action than DUMP takes a key range, by action: `(cursor, producer,
#: owner, size) -> keys taken, 0 when the table is done, None when the cursor was lost` (as
#: `take_range`). Registered by the module that builds on dumps (reconcile: VERIFY).
RANGE_ACTIONS = {}


def key_range_producers(job, found):
    """The names of `job`'s producers walked by key range: a whole-table dump, or a whole-table action registered."""
    if job.scope != DumpJob.Scope.ALL or (job.action != DumpJob.Action.DUMP and job.action not in RANGE_ACTIONS):
        return []
    return [name for name in job.producer_names if getattr(found[name], "dumps_by_key_range", False)]


def add_cursors(job, found, names):
    """A cursor at the start of each producer's table, with the table's size as the estimate."""
    DumpCursor.objects.bulk_create([
        DumpCursor(job=job, producer=name, rows_estimate=found[name].estimated_rows()) for name in names
    ])


def retired_users():
    """Every retired user's id, as a subquery: a read leaves their rows out."""
    return Snapshot.objects.filter(producer=RETIREMENT, user_id__isnull=False).values("user_id")


def chunk_dump_id(job_id, producer, key_from, key_to):
    return uuid.uuid5(CHUNK_NAMESPACE, f"{job_id}:{producer}:{key_from}:{key_to}")


def claimable(job, abandoned=()):
    free = Q(lease_owner__isnull=True) | Q(lease_expires_at__lte=UtcNow())
    if abandoned:
        free |= Q(lease_owner__in=list(abandoned))
    return DumpCursor.objects.filter(job=job, finished=False).filter(free)


def abandoned_owners(job):
    owners = (DumpCursor.objects.filter(job=job, finished=False, lease_expires_at__gt=UtcNow())
              .exclude(lease_owner__isnull=True).values_list("lease_owner", flat=True).distinct().order_by())
    return liveness.abandoned(set(owners))


def claim_cursor(job, owner):
    """Lease the first unfinished cursor of `job` nobody (alive) holds to `owner`; None when there is none."""
    abandoned = abandoned_owners(job)
    while True:
        candidate = claimable(job, abandoned).order_by("id").values("id", "lease_owner").first()
        if candidate is None:
            return None
        # Compare-and-swap on the owner read: two workers never both take it.
        if claimable(job, abandoned).filter(**candidate).update(lease_owner=owner, lease_expires_at=lease_end()):
            return DumpCursor.objects.get(pk=candidate["id"])


def release(job, owner):
    """Give back the cursors `owner` holds (time is up, or it was stopped)."""
    return DumpCursor.objects.filter(job=job, lease_owner=owner).update(lease_owner=None, lease_expires_at=None)


def unfinished(job):
    return DumpCursor.objects.filter(job=job, finished=False).exists()


def take_range(cursor, producer, owner, size=None):
    """
    Queue the next chunk after `cursor` (read, encode, write; see the module): the rows
    queued (0 when the table is done: the cursor is finished), or None when the cursor was
    taken from this worker meanwhile (nothing written).
    """
    size = size or conf.backfill_chunk_rows()
    now = db_now()
    rows, key_to, last = producer.rows_after(cursor.last_key, size, excluded_users=retired_users())
    grid = conf.sweep_chunk() if producer.sweepable else None
    if key_to is None:  # no key is left
        with transaction.atomic():
            done = DumpCursor.objects.filter(pk=cursor.pk, lease_owner=owner, last_key=cursor.last_key).update(
                finished=True, lease_owner=None, lease_expires_at=None
            )
            if done and grid:  # the range the last chunk ended in ends with the table
                swept_ranges.record_chunk(producer.name, cursor.last_key, cursor.last_key, [], grid, last=True)
        return 0 if done else None
    key_from = cursor.last_key + 1
    dump_id = chunk_dump_id(cursor.job_id, producer.name, key_from, key_to)
    when = dump_time(now)
    lines, users, failed, read = encode(producer, rows, dump_id, when)
    del rows
    with transaction.atomic():
        if producer.personal_data:
            # Retirements that committed since the read's snapshot of the database was taken.
            recent = set(retired_users().filter(created__gte=now - RETIRED_MARGIN).values_list("user_id", flat=True))
            if recent:
                lines = [line for line, user in zip(lines, users, strict=True) if user not in recent]
                failed = [failure for failure in failed if failure[2] not in recent]
                read = [(key, digest, user) for key, digest, user in read if user not in recent]
        advanced = DumpCursor.objects.filter(pk=cursor.pk, lease_owner=owner, last_key=cursor.last_key).update(
            last_key=key_to, rows_done=F("rows_done") + len(lines), chunks=F("chunks") + 1,
            lease_expires_at=lease_end(),
        )
        if not advanced:
            transaction.set_rollback(True)
            log.warning("clickhouse_outbox: lost the %s cursor of dump job %s at key %s", producer.name,
                        cursor.job_id, cursor.last_key)
            return None
        if lines:
            queue_chunk(cursor.job_id, producer, key_from, key_to, dump_id, when, lines)
        if grid:  # what the sweep would read of the ranges of its grid: the first sweep compares none
            swept_ranges.record_chunk(producer.name, cursor.last_key, key_to,
                                      [(key, digest) for key, digest, _ in read], grid, last=last)
        for key, exc, user_id in failed:  # for outbox_requeue --failed, as a subject's failed snapshot is
            record_failed_snapshot(producer.name, str(key), exc, dump_id=uuid.uuid4(), reason=REASON, user_id=user_id)
    if failed:
        log.error("clickhouse_outbox: %d %s of keys %s-%s could not be encoded; recorded as failed snapshots",
                  len(failed), producer.noun[1], key_from, key_to)
    cursor.last_key = key_to
    return len(lines)


def encode(producer, rows, dump_id, when):
    """
    (lines, their users, failures as (key, error, user), and every row's (key, digest or None,
    user)): a row that cannot be encoded fails alone. Each line is encoded with dump_id and
    time_last_dumped empty, hashed as its snapshot's digest would be (what the sweep
    compares), then given the chunk's.
    """
    lines, users, failed, read = [], [], [], []
    emptied_line = producer.values_encoder(dump_id="", time_last_dumped="")
    values = stamp(dump_id, when)
    full_line = None
    table = producer.tables[0].name
    user_index = producer.user_index if producer.personal_data else None
    for row in rows:
        user = None if user_index is None else row[user_index]
        try:
            emptied = emptied_line(row)
        except Exception as exc:  # noqa: BLE001 (recorded as the subject's failed snapshot, with the error)
            failed.append((row[0], exc, user))
            read.append((row[0], None, user))
            continue
        line = stamped(emptied, values)
        if line is None:  # another layout: encoded with the values
            full_line = full_line or producer.values_encoder(dump_id=dump_id, time_last_dumped=when)
            line = full_line(row)
        lines.append(line)
        users.append(user)
        read.append((row[0], row_digest(table, emptied), user))
    return lines, users, failed, read


def queue_chunk(job_id, producer, key_from, key_to, dump_id, when, lines):
    """One snapshot, one entry holding every line, one DumpChunk naming the range (in the caller's transaction)."""
    table = producer.tables[0].name
    snapshot = Snapshot.objects.create(
        producer=producer.name, subject=f"keys {key_from}-{key_to}", reason=REASON, dump_id=dump_id,
        time_last_dumped=when, row_count=len(lines), table_rows={table: len(lines)},
    )
    OutboxEntry.objects.create(snapshot=snapshot, table=table, kind=Kind.INSERT, row_count=len(lines),
                               payload=compress(b"".join(lines)), encoding=GZIP)
    DumpChunk.objects.create(job_id=job_id, producer=producer.name, key_from=key_from, key_to=key_to,
                             snapshot=snapshot, rows=len(lines))
    log.info("clickhouse_outbox: queued %s keys %s-%s of dump job %s: %d rows in one entry", producer.name,
             key_from, key_to, job_id, len(lines))


def taker(job):
    """What takes a key range of `job`: queue it (a dump), or the action's registered one."""
    return RANGE_ACTIONS.get(job.action, take_range)


def walk(job, owner, found, *, stop, on_chunk=None, size=None):
    """
    Work through `job`'s cursors, one at a time, until none is left to claim or `stop()`
    says so; the cursor held is given back when stopping. `on_chunk(producer, rows)` after
    each chunk. Returns False if it stopped early.
    """
    take = taker(job)
    try:
        while True:
            cursor = claim_cursor(job, owner)
            if cursor is None:
                return True
            producer = found[cursor.producer]
            while True:
                started = time.monotonic()
                queued = take(cursor, producer, owner, size)
                if queued is None:
                    break  # another worker holds it now
                if on_chunk:
                    on_chunk(producer.name, queued, time.monotonic() - started)
                if queued == 0 and cursor_finished(cursor):
                    break
                if stop():
                    return False
    finally:
        release(job, owner)


def cursor_finished(cursor):
    return DumpCursor.objects.filter(pk=cursor.pk, finished=True).exists()


def progress(job):
    """{"total", "done", "failed", "left"} rows of `job`'s cursors (`total` estimated when the job started; `failed`: a verification's to repair)."""
    total = done = failed = left = 0
    for estimate, rows, to_repair, finished in job.cursors.values_list("rows_estimate", "rows_done", "rows_to_repair",
                                                                       "finished"):
        done += rows - to_repair
        failed += to_repair
        total += rows if finished else max(estimate, rows)
        left += 0 if finished else max(estimate - rows, 0)
    return {"total": total, "done": done, "failed": failed, "left": left}
