"""
Verifying a chunk of subjects of one producer: each subject's latest snapshot, if the
outbox delivered it, against what ClickHouse holds for its dump_id, table by table (and
replica by replica); then, where the source can tell, whether it holds a newer version.

A subject gets one verdict, the most urgent of what was found:

    absent       none of the snapshot's rows is in ClickHouse (on some replica)
    missing      fewer rows than the snapshot holds in some table
    duplicates   some row is there more than once (a resend on a table that does not deduplicate;
                 a ReplacingMergeTree table folds its copies itself, so they are not counted)
    differs      the rows are all there, but the latest one is not what the source holds now
                 (learners and tags, whose content is compared: see content.py); a profile changed
                 by `QuerySet.update()`, which sends no signal
    stale        the rows are all there, but the source changed after the snapshot was taken
    (a subject sent in a chunk of a whole-table dump, not in a snapshot of its own, has the
    chunk's verdict: the chunk's rows are counted by its dump_id, as a snapshot's are)
    never        the outbox never sent a snapshot of it (it existed before the plugin, say); the
                 rows ClickHouse holds of it all the same (sent by the peer's sink) are counted
    undelivered  its latest snapshot is not delivered yet: nothing to compare (not a failure)
    ok

Each check is a few aggregate queries per chunk, whatever its size: see held.py.
"""

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import Sum

from clickhouse_outbox.clickhouse.cluster import http_replicas
from clickhouse_outbox.models import DumpChunk, Kind, OutboxEntry, Snapshot, Verdict
from clickhouse_outbox.operations.delivery import State, with_delivery
from clickhouse_outbox.operations.requeue import latest_snapshots
from clickhouse_outbox.reconcile.content import content_differences
from clickhouse_outbox.reconcile.held import TableMissing, held_rows, rows_by_subject
from clickhouse_outbox.text import format_age, plural

#: Most urgent first; a subject's verdict is the first that applies.
URGENCY = (Verdict.Kind.ABSENT, Verdict.Kind.MISSING, Verdict.Kind.DUPLICATES, Verdict.Kind.DIFFERS,
           Verdict.Kind.STALE)
#: What a repair dumps again: every verdict but ok and undelivered.
TO_REPAIR = frozenset({*URGENCY, Verdict.Kind.NEVER})
#: A source version this much newer than the snapshot is a newer version; less is the publish itself
#: (the platform updates its course overview in a receiver of the same publish, before or after ours).
STALE_MARGIN = timedelta(minutes=2)


@dataclass
class Check:
    subject: str
    verdict: str
    snapshot: Snapshot | None = None
    #: {"tables": {table: {"expected": n, "found": n, "distinct": n}}} per replica ({"replicas": {address: ...}})
    details: dict = field(default_factory=dict)

    def summary(self):
        """'course_blocks: 51 of 52 rows', 'course_blocks: 104 rows, 52 distinct', 'stale: published ... later'."""
        if self.verdict == Verdict.Kind.NEVER and self.details.get("held"):
            return f"never sent by the outbox; ClickHouse holds {describe(self.details)} from before it"
        if self.verdict in (Verdict.Kind.OK, Verdict.Kind.NEVER, Verdict.Kind.UNDELIVERED):
            return Verdict.Kind(self.verdict).label.lower()
        return f"{Verdict.Kind(self.verdict).label.lower()}: {describe(self.details)}"


def describe(details):
    if "held" in details:
        return "; ".join(f"{table}: {plural(rows, 'row')}" for table, rows in sorted(details["held"].items()))
    parts = []
    for replica, tables in sorted(replicas_of(details)):  # sorted: PostgreSQL's jsonb keeps no order
        where = f" on {replica}" if replica else ""
        for table, counts in sorted(tables.items()):
            if counts.get("missing_table"):
                parts.append(f"{table}{where}: no such table")
            elif counts["found"] < counts["expected"]:
                parts.append(f"{table}{where}: {counts['found']:,} of {plural(counts['expected'], 'row')}")
            elif counts["found"] > counts["distinct"]:
                parts.append(f"{table}{where}: {plural(counts['found'], 'row')}, {counts['distinct']:,} distinct")
    for table, columns in sorted(details.get("content", {}).items()):
        parts.append(f"{table}: {', '.join(columns)} {'differs' if len(columns) == 1 else 'differ'} from the source")
    if details.get("source_changed_at"):
        changed, taken = (datetime.fromisoformat(details[key]) for key in ("source_changed_at", "taken_at"))
        parts.append(f"the source changed at {changed.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC, "
                     f"{format_age((changed - taken).total_seconds())} after the snapshot")
    return "; ".join(parts) or "-"


def replicas_of(details):
    if "replicas" in details:
        return list(details["replicas"].items())
    return [("", details.get("tables", {}))]


def verify(producer, subjects, backend, *, each_replica=False, now, job=None, recorded=True):
    """A Check per subject of `producer` (in order); the verdicts are recorded (Verdict) unless not `recorded`."""
    latest = {snapshot.subject: snapshot for snapshot in
              with_delivery(latest_snapshots(producer.name).filter(subject__in=subjects))}
    checks, compared = {}, []
    for subject in subjects:
        snapshot = latest.get(subject)
        if snapshot is None:
            checks[subject] = Check(subject, Verdict.Kind.NEVER)
        elif snapshot.delivery_state in (State.DELETED, State.DISMISSED, State.SUPERSEDED):
            checks[subject] = Check(subject, Verdict.Kind.OK, snapshot, {"note": snapshot.delivery_state})
        elif snapshot.delivery_state not in (State.DELIVERED, State.REJECTED):  # rejected rows were purged: compare
            checks[subject] = Check(subject, Verdict.Kind.UNDELIVERED, snapshot)
        else:
            compared.append(snapshot)
    expected = {snapshot.subject: expected_rows(snapshot) for snapshot in compared}
    replicas = http_replicas(backend) if each_replica else [backend]
    found = {getattr(replica, "address", ""): held(producer, replica, compared) for replica in replicas}
    folding = {table.name for table in producer.tables if "ReplacingMergeTree" in table.engine}
    versions = producer.versions([snapshot.subject for snapshot in compared]) if compared else {}
    for snapshot in compared:
        checks[snapshot.subject] = judge(snapshot, expected[snapshot.subject], found, versions.get(snapshot.subject),
                                         each_replica, folding)
    if getattr(producer, "sweepable", False):  # one row of a platform table: its content is compared too
        compare_content(producer, backend, [checks[snapshot.subject] for snapshot in compared])
    never = [subject for subject, check in checks.items() if check.verdict == Verdict.Kind.NEVER]
    checks.update(in_chunks(producer, never, replicas, each_replica, folding))
    held_before(producer, backend, [check for check in checks.values() if check.verdict == Verdict.Kind.NEVER])
    ordered = [checks[subject] for subject in subjects]
    if recorded:
        record(producer, ordered, now, job)
    return ordered


def compare_content(producer, backend, checks):
    """Checks whose rows are all there but whose latest row is not the source's now become `differs`."""
    whole = {check.subject: check for check in checks
             if check.verdict not in (Verdict.Kind.ABSENT, Verdict.Kind.MISSING, Verdict.Kind.DUPLICATES)}
    for subject, columns in content_differences(producer, backend, list(whole)).items():
        check = whole[subject]
        check.verdict = Verdict.Kind.DIFFERS
        check.details["content"] = {producer.table.name: columns}


def covering_chunks(producer, subjects):
    """{subject: snapshot id} of the newest chunk of a whole-table dump whose key range holds each subject (if any)."""
    if not getattr(producer, "dumps_by_key_range", False) or not subjects:
        return {}
    keys = sorted(int(subject) for subject in subjects)
    chunks = (DumpChunk.objects.filter(producer=producer.name, key_to__gte=keys[0], key_from__lte=keys[-1])
              .order_by("snapshot_id").values_list("key_from", "key_to", "snapshot_id"))
    covered = {}
    for key_from, key_to, snapshot_id in chunks:  # newest last: it wins
        start = bisect_left(keys, key_from)
        for key in keys[start:bisect_right(keys, key_to)]:
            covered[str(key)] = snapshot_id
    return covered


def in_chunks(producer, subjects, replicas, each_replica, folding):
    """
    A Check per subject the outbox sent in a chunk of a whole-table dump (`dumps.ranges`), not
    in a snapshot of its own: the chunk's verdict (its rows share one dump_id, counted as a
    snapshot's are), undelivered while the chunk is.
    """
    covered = covering_chunks(producer, subjects)
    if not covered:
        return {}
    chunks = {snapshot.pk: snapshot for snapshot in with_delivery(Snapshot.objects.filter(pk__in=set(covered.values())))}
    delivered = [snapshot for snapshot in chunks.values() if snapshot.delivery_state in (State.DELIVERED, State.REJECTED)]
    found = {}
    for replica in replicas:
        tables = {}
        for table in producer.tables:
            try:
                tables[table.name] = held_rows(replica, table, [str(snapshot.dump_id) for snapshot in delivered],
                                               row_key=(producer.key_column,))
            except TableMissing as exc:
                tables[table.name] = exc
        found[getattr(replica, "address", "")] = tables
    verdicts = {snapshot.pk: judge(snapshot, expected_rows(snapshot), found, None, each_replica, folding)
                for snapshot in delivered}
    checks = {}
    for subject, snapshot_id in covered.items():
        snapshot = chunks[snapshot_id]
        if snapshot_id in verdicts:
            chunk = verdicts[snapshot_id]
            checks[subject] = Check(subject, chunk.verdict, snapshot, {**chunk.details, "chunk": snapshot.subject})
        elif snapshot.delivery_state in (State.DELETED, State.DISMISSED, State.SUPERSEDED):
            checks[subject] = Check(subject, Verdict.Kind.OK, snapshot, {"note": snapshot.delivery_state})
        else:
            checks[subject] = Check(subject, Verdict.Kind.UNDELIVERED, snapshot)
    return checks


def held_before(producer, backend, never):
    """What ClickHouse holds of subjects the outbox never sent (the peer's rows, say), in their details."""
    by_subject = {check.subject: check for check in never}
    for table in producer.tables:
        column = producer.subject_column(table)
        if not by_subject or not column:
            continue
        for subject, rows in rows_by_subject(backend, table, column, list(by_subject)).items():
            if subject in by_subject:
                by_subject[subject].details.setdefault("held", {})[table.name] = rows


def expected_rows(snapshot):
    """{table: rows} the snapshot holds: kept on the snapshot, or summed from its entries (older snapshots)."""
    if snapshot.table_rows:
        return dict(snapshot.table_rows)
    live = OutboxEntry.objects.filter(snapshot=snapshot, kind=Kind.INSERT).exclude(
        status__in=[OutboxEntry.Status.SUPERSEDED, OutboxEntry.Status.SPLIT, OutboxEntry.Status.REMOVED]
    )
    return dict(live.values_list("table").annotate(rows=Sum("row_count")).order_by())


def held(producer, backend, snapshots):
    """{table: {dump_id: (rows, distinct)} or TableMissing} on one server."""
    dump_ids = [str(snapshot.dump_id) for snapshot in snapshots]
    subjects = [snapshot.subject for snapshot in snapshots]
    result = {}
    for table in producer.tables:
        try:
            result[table.name] = held_rows(backend, table, dump_ids, producer.subject_column(table), subjects)
        except TableMissing as exc:
            result[table.name] = exc
    return result


def judge(snapshot, expected, found, source_changed_at, each_replica, folding=frozenset()):
    per_replica = {}
    verdicts = set()
    for replica, tables in found.items():
        counts = {}
        for table, rows in expected.items():
            holding = tables.get(table, {})
            if isinstance(holding, TableMissing):
                counts[table] = {"expected": rows, "found": 0, "distinct": 0, "missing_table": True}
                continue
            there, distinct = holding.get(str(snapshot.dump_id), (0, 0))
            counts[table] = {"expected": rows, "found": there, "distinct": distinct}
        per_replica[replica] = counts
        if expected and all(c["found"] == 0 for c in counts.values()):
            verdicts.add(Verdict.Kind.ABSENT)
        elif any(c["distinct"] < c["expected"] for c in counts.values()):
            verdicts.add(Verdict.Kind.MISSING)
        elif any(c["found"] > c["distinct"] for table, c in counts.items() if table not in folding):
            verdicts.add(Verdict.Kind.DUPLICATES)
    details = {"replicas": per_replica} if each_replica else {"tables": next(iter(per_replica.values()), {})}
    if source_changed_at is not None and source_changed_at > snapshot.created + STALE_MARGIN:
        verdicts.add(Verdict.Kind.STALE)
        details.update(source_changed_at=source_changed_at.isoformat(), taken_at=snapshot.created.isoformat())
    verdict = next((kind for kind in URGENCY if kind in verdicts), Verdict.Kind.OK)
    return Check(snapshot.subject, verdict, snapshot, details)


def record(producer, checks, now, job=None, *, ok_too=True):
    """
    The subjects' verdicts, replacing the last ones (one transaction per chunk); without
    `ok_too` (a whole table walked by key range) an ok subject's last verdict is only removed:
    its job counts it.
    """
    kept = checks if ok_too else [check for check in checks if check.verdict != Verdict.Kind.OK]
    with transaction.atomic():
        Verdict.objects.filter(producer=producer.name, subject__in=[check.subject for check in checks]).delete()
        Verdict.objects.bulk_create([
            Verdict(producer=producer.name, subject=check.subject, verdict=check.verdict, snapshot=check.snapshot,
                    details=check.details, checked_at=now, job=job)
            for check in kept
        ])
