"""
The outbox's health at a glance: what waits, what failed, how old the oldest unsent row
is, when ClickHouse last took a batch. Read by `outbox_status`, `outbox_drain` (for its
exit code) and the admin's course view.

outbox_status's exit codes: 0 healthy; 1 failed batches or failed snapshots exist, a
batch waits to retry after an error (ClickHouse failing, a missing table...), or the last
verification found subjects that differ and were not repaired since: for as long as that
lasts; 2 the oldest unsent row is older than the allowed age (delivery is stuck; it takes
precedence over 1). outbox_drain's status is about delivery only (`delivery=True`): the
batches, and the age of what waits; what the source could not read and what a verification
found are for outbox_status and outbox_verify to report.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, Exists, F, Max, Min, OuterRef, Sum, Value
from django.db.models.functions import Coalesce

from clickhouse_outbox.db import db_now
from clickhouse_outbox.dumps.jobs import active_job, job_progress
from clickhouse_outbox.models import Batch, DumpJob, Kind, OutboxEntry, Snapshot, Verdict
from clickhouse_outbox.operations.requeue import latest_snapshots
from clickhouse_outbox.outbox import registry
from clickhouse_outbox.text import format_age, last_line, plural

HEALTHY, FAILURES, STALE = 0, 1, 2

#: The states rows are counted in, per table.
ROW_STATES = ("pending", "sending", "waiting", "failed")
#: The verdicts that found ClickHouse holding something else than what was delivered.
DIFFERING = [kind for kind in Verdict.Kind if kind not in (Verdict.Kind.OK, Verdict.Kind.UNDELIVERED)]
_BATCH_ROW_STATES = {Batch.Status.CLAIMED: "sending", Batch.Status.RETRY: "waiting", Batch.Status.FAILED: "failed"}


@dataclass
class OutboxStatus:
    checked_at: datetime
    #: {table: {state: {"entries" or "batches": n, "rows": n}}} for the states in ROW_STATES
    tables: dict
    oldest_unsent_at: datetime | None
    last_sent_at: datetime | None
    #: [(producer, subject, last line of the error)] for subjects whose latest snapshot failed
    failed_snapshots: list
    #: the batch that waits out a failure of the server itself, if any (not one retried by hand since)
    server_failure: Batch | None
    #: the oldest batch that waits to retry after an error of its own (a missing table...), if any
    retrying: Batch | None
    active_dump: DumpJob | None = None
    dump_progress: dict = field(default_factory=dict)
    #: snapshots requested by changes (CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain", tag changes) not yet taken
    requested_snapshots: int = 0
    #: {table: {state: {"entries" or "batches": n, "rows": n}}}: deletes (rows: subjects), as `tables`
    deletes: dict = field(default_factory=dict)
    #: names of the producers that are on
    enabled_producers: list = field(default_factory=list)
    #: {verdict: subjects} the last verifications found differing, not repaired since (no newer snapshot)
    differing: dict = field(default_factory=dict)
    last_verified_at: datetime | None = None

    def total(self, state, unit="rows", of=None):
        return sum(counts.get(state, {}).get(unit, 0) for counts in (self.tables if of is None else of).values())

    def total_deletes(self, state, unit="rows"):
        return self.total(state, unit, self.deletes)

    @property
    def failed_batches(self):
        return self.total("failed", "batches") + self.total_deletes("failed", "batches")

    @property
    def oldest_unsent_age(self):
        """Seconds since the oldest row still to send was queued, or None."""
        if self.oldest_unsent_at is None:
            return None
        return max((self.checked_at - self.oldest_unsent_at).total_seconds(), 0.0)

    def exit_code(self, max_age, *, delivery=False):
        """0, 1 or 2 (see above); `delivery`: only what delivery itself is (batches, age), as outbox_drain."""
        age = self.oldest_unsent_age
        if max_age is not None and age is not None and age > max_age:
            return STALE
        if self.failed_batches or self.server_failure or self.retrying:
            return FAILURES
        if not delivery and (self.failed_snapshots or self.differing):
            return FAILURES
        return HEALTHY

    def problems(self, max_age, *, delivery=False):
        """What makes the exit code non-zero, in words an operator can act on (`delivery`: as `exit_code`)."""
        found = []
        age = self.oldest_unsent_age
        if max_age is not None and age is not None and age > max_age:
            found.append(f"the oldest unsent row has waited {format_age(age)} (more than {format_age(max_age)})")
        if self.server_failure:
            batch = self.server_failure
            found.append(
                f"ClickHouse is failing: new rows wait until batch {batch.pk} gets through (next attempt "
                f"{iso(batch.next_attempt_at)}; retry now in the admin or with outbox_requeue --failed); "
                f"last error, at {iso(batch.last_error_at)}: {batch.last_error}"
            )
        elif self.retrying:
            batch = self.retrying
            found.append(
                f"batch {batch.pk} ({batch.table}) waits to retry after an error (next attempt "
                f"{iso(batch.next_attempt_at)}): {batch.last_error}"
            )
        failed_inserts = self.total("failed", "batches")
        if failed_inserts:
            found.append(
                f"{plural(failed_inserts, 'batch', 'batches')} ({plural(self.total('failed'), 'row')}) failed: "
                "retry them in the admin or with outbox_requeue --failed"
            )
        failed_deletes = self.total_deletes("failed", "batches")
        if failed_deletes:
            found.append(
                f"{plural(failed_deletes, 'delete batch', 'delete batches')} "
                f"({plural(self.total_deletes('failed'), 'subject')}) failed, so deleted rows (a retired user's) are "
                "still in ClickHouse: retry them in the admin or with outbox_requeue --failed"
            )
        if self.differing and not delivery:
            counts = ", ".join(f"{kind}: {count:,}" for kind, count in self.differing.items())
            total = sum(self.differing.values())
            found.append(
                f"{plural(total, 'subject')} {'differs' if total == 1 else 'differ'} in ClickHouse from what was "
                "delivered "
                f"({counts}; last verified {iso(self.last_verified_at)}): outbox_verify --repair dumps them again"
            )
        for name, failed in group_by_producer([] if delivery else self.failed_snapshots).items():
            keys = ", ".join(subject for subject, _ in failed[:3])
            more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
            found.append(
                f"{plural(len(failed), *noun(name))} could not be read ({keys}{more}): "
                "outbox_requeue --failed takes them again; dismiss unknown ones in the admin"
            )
        return found

    def as_dict(self, max_age):
        return {
            "exit_code": self.exit_code(max_age),
            "problems": self.problems(max_age),
            "checked_at": self.checked_at.isoformat(),
            "tables": self.tables,
            "totals": {state: self.total(state) for state in ROW_STATES},
            "failed_batches": self.failed_batches,
            "deletes": self.deletes,
            "delete_totals": {state: self.total_deletes(state) for state in ROW_STATES},
            "producers": self.enabled_producers,
            "differing": self.differing,
            "last_verified_at": iso(self.last_verified_at),
            "requested_snapshots": self.requested_snapshots,
            "oldest_unsent_at": self.oldest_unsent_at.isoformat() if self.oldest_unsent_at else None,
            "oldest_unsent_age_seconds": round(self.oldest_unsent_age, 3) if self.oldest_unsent_at else None,
            "max_age_seconds": max_age,
            "last_sent_at": self.last_sent_at.isoformat() if self.last_sent_at else None,
            "failed_snapshots": [{"producer": name, "subject": subject, "error": error}
                                 for name, subject, error in self.failed_snapshots],
            "server_failure": None if self.server_failure is None else {
                "batch": self.server_failure.pk,
                "error": self.server_failure.last_error,
                "next_attempt_at": iso(self.server_failure.next_attempt_at),
            },
            "retrying": None if self.retrying is None else {
                "batch": self.retrying.pk,
                "table": self.retrying.table,
                "error": self.retrying.last_error,
                "next_attempt_at": iso(self.retrying.next_attempt_at),
            },
            "dump_job": None if self.active_dump is None else {
                "id": self.active_dump.pk, "description": str(self.active_dump), **self.dump_progress,
            },
        }


def outbox_status():
    """Read the outbox's state (a handful of indexed queries)."""
    counts = row_counts()
    failed_snapshots = [
        (name, subject, last_line(error))
        for name, subject, error in latest_snapshots().filter(status=Snapshot.Status.FAILED)
        .order_by("producer", "subject").values_list("producer", "subject", "error")
    ]
    job = active_job()
    waiting = waiting_after_failure()
    return OutboxStatus(
        checked_at=db_now(),
        tables=dict(sorted(counts[Kind.INSERT].items())),
        oldest_unsent_at=unsent_since(counts),
        requested_snapshots=Snapshot.objects.filter(status=Snapshot.Status.REQUESTED).count(),
        last_sent_at=last_sent_at(),
        failed_snapshots=failed_snapshots,
        server_failure=waiting.filter(server_error=True).order_by("-id").first(),
        retrying=waiting.filter(server_error=False).order_by("id").first(),
        active_dump=job,
        dump_progress=job_progress(job) if job else {},
        deletes=dict(sorted(counts[Kind.DELETE].items())),
        enabled_producers=[producer.name for producer in registry.enabled_producers()],
        differing=differing_verdicts(),
        last_verified_at=Verdict.objects.aggregate(last=Max("checked_at"))["last"],
    )


def row_counts():
    """
    {kind: {table: {state: {"entries" or "batches": n, "rows": n}}}} of what is unsent or failed: pending
    entries (by the pending index) and claimed, waiting and failed batches (by the status index).
    """
    counts = {Kind.INSERT: {}, Kind.DELETE: {}}
    pending = (
        OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING)
        .values("kind", "table")
        .annotate(entries=Count("id"), rows=Sum("row_count"))
        .order_by()
    )
    for row in pending:
        counts[row["kind"]].setdefault(row["table"], {})["pending"] = {"entries": row["entries"], "rows": row["rows"] or 0}
    open_batches = (
        Batch.objects.filter(status__in=list(_BATCH_ROW_STATES))
        .values("kind", "table", "status")
        .annotate(batches=Count("id"), rows=Sum("row_count"))
        .order_by()
    )
    for row in open_batches:
        state = _BATCH_ROW_STATES[row["status"]]
        counts[row["kind"]].setdefault(row["table"], {})[state] = {"batches": row["batches"], "rows": row["rows"] or 0}
    return counts


def unsent_since(counts):
    """When the oldest row still to send was queued (a requested snapshot not yet taken counts), or None."""
    requested = Snapshot.objects.filter(status=Snapshot.Status.REQUESTED).order_by("id")
    return min(filter(None, [oldest_unsent(counts), requested.values_list("created", flat=True).first()]),
               default=None)


def waiting_after_failure():
    """Batches waiting after a failed attempt; not those retried by hand and not tried since."""
    return Batch.objects.filter(status=Batch.Status.RETRY, attempts__gt=F("attempts_at_requeue")).exclude(
        last_error=""
    )


def last_sent_at():
    """When ClickHouse last took a batch (by the sent index), or None."""
    return Batch.objects.filter(status=Batch.Status.SENT).aggregate(last=Max("sent_at"))["last"]


def oldest_unsent(counts):
    """
    When the oldest row still to send was queued: the first pending entry of each table and
    kind in `counts` (by the pending index) and the first entry of the open batches (a
    requested snapshot, not yet taken, counts too: see `outbox_status`).
    """
    candidates = []
    for kind, table in ((kind, table) for kind, tables in counts.items() for table in tables):
        first = (
            OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING, kind=kind, table=table)
            .order_by("id")
            .values_list("created", flat=True)
            .first()
        )
        if first is not None:
            candidates.append(first)
    open_batches = Batch.objects.filter(status__in=[Batch.Status.CLAIMED, Batch.Status.RETRY])
    first = OutboxEntry.objects.filter(batch__in=open_batches).aggregate(first=Min("created"))["first"]
    if first is None:  # an open batch without entries (there should be none): its own age
        first = open_batches.aggregate(first=Min("created"))["first"]
    if first is not None:
        candidates.append(first)
    return min(candidates, default=None)


def differing_verdicts():
    """
    {verdict label: subjects} of the verdicts that found a difference and that no newer
    snapshot of the subject has repaired since.
    """
    newer = Snapshot.objects.filter(producer=OuterRef("producer"), subject=OuterRef("subject"),
                                    id__gt=Coalesce(OuterRef("snapshot_id"), Value(0)))
    # The kinds that differ, named (not "all but ok"), so the verdict index finds them without a scan.
    open_ones = (Verdict.objects.filter(verdict__in=DIFFERING)
                 .exclude(Exists(newer)).values("verdict").annotate(n=Count("id")).order_by("verdict"))
    return {Verdict.Kind(row["verdict"]).label.lower(): row["n"] for row in open_ones}


def group_by_producer(failed_snapshots):
    """{producer: [(subject, error)]} of (producer, subject, error) triples, in order."""
    grouped = {}
    for name, subject, error in failed_snapshots:
        grouped.setdefault(name, []).append((subject, error))
    return grouped


def noun(name):
    """('course', 'courses') for a producer's name; its name when it is not registered."""
    try:
        return registry.get(name).noun
    except registry.UnknownProducer:
        return (f"{name} subject", f"{name} subjects")


def iso(value):
    return value.isoformat() if value else None
