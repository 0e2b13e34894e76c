"""
The sweep: learner and tag rows written without a signal (`bulk_create`, `QuerySet.update()`,
raw SQL) found by reading each table by ranges of primary keys, and queued.

A range (CLICKHOUSE_OUTBOX_SWEEP_CHUNK keys on a fixed grid) is read with one query; each
row is serialized by its producer's serializer with dump_id and time_last_dumped empty and
hashed as its snapshot's digest is (`outbox.unchanged.digest`); the range's digest is of its
rows' digests. `UserProfile` has no modification time: content is all there is to compare.

- The range's digest is the one last recorded (`outbox.swept_ranges`: by the last sweep, or
  by the whole-table dump that queued the range): nothing in it changed.
- Otherwise each row whose own digest is not the one recorded (every row, where none was) is
  compared with its subject's latest snapshot's digest, and queued as a dump queues it
  (reason "sweep") if they differ or no snapshot ever held it; then the range is recorded.
  So a row changed by `update()` is queued alone, and the first sweep after a backfill by key
  range queues nothing. On a site whose learners were never sent, the first sweep is a
  backfill (at the sweep's pace; while a dump job of the producer is active the sweep leaves
  that producer alone).

A subject that got a snapshot after the sweep began reading its range is left alone (a signal
took it, newer than what was read). The snapshots are read in the transaction that queues,
so a change committed in between is seen; one committed in the instant between the range's
read and that transaction can be overwritten by the older read, and the next sweep, seeing
the row differ from its latest snapshot, queues it again. Deleted rows are the signals' (a
queryset's delete sends them), not the sweep's.
"""

import logging
import time
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Max

from clickhouse_outbox import conf
from clickhouse_outbox.models import DumpJob, Snapshot, SweptRange
from clickhouse_outbox.outbox import registry, swept_ranges
from clickhouse_outbox.db import db_now
from clickhouse_outbox.outbox.enqueue import enqueue
from clickhouse_outbox.outbox.unchanged import row_digest
from clickhouse_outbox.serializers.encoding import dump_time

log = logging.getLogger(__name__)

#: The snapshot reason of rows a sweep queued.
REASON = "sweep"


@dataclass
class SweepResult:
    producer: str
    ranges: int = 0
    rows: int = 0
    #: Ranges whose digest changed (or that no sweep read before), compared row by row.
    compared: int = 0
    queued: int = 0
    #: Rows that could not be serialized (logged; their range is read again next time).
    failed: int = 0
    #: Whether the whole table was read (else the next sweep goes on where this one stopped).
    complete: bool = True
    skipped: str = ""
    seconds: float = 0.0
    queued_subjects: list = field(default_factory=list)

    def as_dict(self):
        return {"producer": self.producer, "ranges": self.ranges, "rows": self.rows, "compared": self.compared,
                "queued": self.queued, "failed": self.failed, "complete": self.complete, "skipped": self.skipped,
                "seconds": round(self.seconds, 3)}


def sweepable_producers(names=None):
    """The producers a sweep reads: those whose subject is one row of a platform model that is installed (and on)."""
    producers = [registry.get(name) for name in names] if names else registry.enabled_producers()
    return [producer for producer in producers if getattr(producer, "sweepable", False) and producer.installed()]


def dumped_producers():
    """The producers an active dump job is dumping: the sweep leaves them to it."""
    job = DumpJob.objects.filter(active=True, action=DumpJob.Action.DUMP).first()
    return set(job.producer_names) if job else set()


def sweep(names=None, *, chunk=None, max_seconds=None):
    """
    Sweep the producers called `names` (default: every sweepable producer that is on) for at
    most `max_seconds` (None: until done); a SweepResult each.
    """
    chunk = chunk or conf.sweep_chunk()
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    busy = dumped_producers()
    results = []
    for producer in sweepable_producers(names):
        if producer.name in busy:
            results.append(SweepResult(producer.name, complete=False, skipped="a dump job of it is under way"))
            continue
        if deadline is not None and results and time.monotonic() >= deadline:  # the first always makes progress
            results.append(SweepResult(producer.name, complete=False, skipped="out of time"))
            continue
        results.append(sweep_producer(producer, chunk, deadline))
    return results


def sweep_producer(producer, chunk, deadline=None):
    """Read `producer`'s table range by range, from where the last sweep stopped, round to it again."""
    started = time.monotonic()
    result = SweepResult(producer.name)
    stored = forget_other_sizes(producer.name, chunk)
    last = SweptRange.objects.filter(producer=producer.name).order_by("-swept_at", "-key_from").first()
    start = last.key_to + 1 if last else 0
    seen = set()
    for key_from in ranges(producer, chunk, start):
        sweep_range(producer, key_from, key_from + chunk - 1, stored.get(key_from), result)
        seen.add(key_from)
        if deadline is not None and time.monotonic() >= deadline:
            result.complete = False
            break
    if result.complete:  # ranges whose rows are all gone
        SweptRange.objects.filter(producer=producer.name).exclude(key_from__in=seen).delete()
    result.seconds = time.monotonic() - started
    if result.queued or result.failed:
        log.info("clickhouse_outbox: the sweep of %s read %d rows in %d ranges, queued %d that differed from what "
                 "was sent%s", producer.name, result.rows, result.ranges, result.queued,
                 f", {result.failed} could not be serialized" if result.failed else "")
    return result


def forget_other_sizes(name, chunk):
    """{key_from: SweptRange} of `name` on the grid of `chunk`; ranges of another size (the setting changed) go."""
    stored = {}
    other = []
    for swept in SweptRange.objects.filter(producer=name):
        if swept.key_from % chunk or swept.key_to - swept.key_from + 1 != chunk:
            other.append(swept.pk)
        else:
            stored[swept.key_from] = swept
    if other:
        SweptRange.objects.filter(pk__in=other).delete()
    return stored


def ranges(producer, chunk, start):
    """The first key of each range on the grid of `chunk` that holds rows: from `start` on, then from 0 up to it."""
    keys = producer.model()._default_manager.order_by("pk").values_list("pk", flat=True)
    for low, high in ((start, None), (0, start)) if start else ((0, None),):
        key = low
        while True:
            found = keys.filter(pk__gte=key)
            if high is not None:
                found = found.filter(pk__lt=high)
            first = found.first()
            if first is None:
                break
            key_from = first - first % chunk
            yield key_from
            key = key_from + chunk


def sweep_range(producer, key_from, key_to, stored, result):
    """
    Read one range; if its digest changed, compare the rows whose own digest changed (every
    row, where none was recorded) with their snapshots. Counts go to `result`.
    """
    before = Snapshot.objects.aggregate(last=Max("id"))["last"] or 0
    rows = list(producer.queryset().filter(pk__gte=key_from, pk__lte=key_to).order_by("pk"))
    digests, failed = row_digests(producer, rows)
    read = [(row.pk, digests.get(row.pk)) for row in rows]
    result.ranges += 1
    result.rows += len(rows)
    result.failed += failed
    if stored is not None and stored.digest == swept_ranges.range_digest(read):
        return
    result.compared += 1
    known = swept_ranges.unpack(stored.row_digests) if stored is not None else {}
    changed = [row for row in rows if row.pk in digests and not swept_ranges.same_row(known, row.pk, digests[row.pk])]
    queued = queue_differing(producer, changed, digests, before)
    result.queued += len(queued)
    result.queued_subjects.extend(queued)
    if failed:
        return  # read again next time
    swept_ranges.record(producer.name, key_from, key_to, read, queued=len(queued))


def row_digests(producer, rows):
    """{pk: the digest its snapshot would have}, and how many rows could not be serialized (logged)."""
    table = producer.table.name
    digests, failed = {}, 0
    for row in rows:
        try:
            line = producer.serialize(row, dump_id="", time_last_dumped="")
        except Exception as exc:  # noqa: BLE001 (one bad row does not stop the sweep)
            failed += 1
            log.warning("clickhouse_outbox: the sweep could not serialize %s %s: %s", producer.name, row.pk,
                        type(exc).__name__)
            continue
        digests[row.pk] = row_digest(table, line)
    return digests, failed


def queue_differing(producer, rows, digests, before):
    """
    Queue the rows whose digest is not their latest snapshot's (or that none holds), in one
    transaction that first reads those snapshots; returns the subjects queued. A subject with a
    snapshot newer than `before` (the last snapshot id when the range was read) is left alone,
    and so is one whose latest snapshot is a request the drain will fill (SNAPSHOT_AT = drain).
    """
    by_subject = {str(row.pk): row for row in rows if row.pk in digests}
    if not by_subject:
        return []
    with transaction.atomic():
        latest = {}
        history = (Snapshot.objects.filter(producer=producer.name, subject__in=list(by_subject))
                   .order_by("subject", "-id").values_list("subject", "id", "status", "digest"))
        for subject, snapshot_id, status, snapshot_digest in history:
            latest.setdefault(subject, (snapshot_id, status, snapshot_digest))
        differ = []
        for subject, row in by_subject.items():
            snapshot_id, status, snapshot_digest = latest.get(subject, (0, None, None))
            if snapshot_id > before or status == Snapshot.Status.REQUESTED:
                continue
            if snapshot_digest and snapshot_digest == digests[row.pk]:  # sent (or rejected: retried by hand)
                continue
            differ.append(row)
        if not differ:
            return []
        time_last_dumped = dump_time(db_now())
        prepared = [producer.prepare_row(str(row.pk), row, time_last_dumped) for row in differ]
        prepared = [snapshot for snapshot in prepared if snapshot.error is None]
        written = enqueue(producer, prepared, reason=REASON)
    return [snapshot.subject for snapshot, queued in zip(prepared, written, strict=True) if queued is not None]
