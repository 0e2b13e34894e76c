"""
The outbox's state as numbers, for the monitoring sites run: what the Prometheus collector,
the StatsD gauges, the drain task's custom attributes and the health endpoint report.

Read at every scrape and after every drain run, so only cheap queries: each one is bounded
by what is unsent, failed or recent (by the status indexes), never by the millions of sent
rows the outbox keeps for its retention. outbox_status's full report (failed snapshots,
dump progress) is not read here.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Min, OuterRef, Subquery, Sum

from clickhouse_outbox import conf
from clickhouse_outbox.models import Batch, DumpJob, Kind, OutboxEntry, Snapshot
from clickhouse_outbox.db import db_now
from clickhouse_outbox.operations.status import (
    differing_verdicts,
    last_sent_at,
    row_counts,
    unsent_since,
    waiting_after_failure,
)

#: The states rows are counted in: pending (not claimed), sending (claimed), waiting (to retry), failed.
STATES = ("pending", "sending", "waiting", "failed")
#: The sent batches the latency is measured on at most (the latest in the window).
LATENCY_SAMPLE = 1000


@dataclass
class Readings:
    checked_at: datetime
    #: {table: {state: rows}} of the inserts, every state present
    rows: dict
    #: {table: {state: subjects}} of the deletes (a retirement's), every state present
    deletes: dict
    #: {kind: batches} that failed for good
    failed_batches: dict
    #: seconds the oldest unsent row (or requested snapshot) has waited; 0 when nothing waits
    oldest_unsent_age: float
    requested_snapshots: int
    #: a batch waits to retry after a failure of the server itself (unreachable, credentials...)
    clickhouse_failing: bool
    last_sent_at: datetime | None
    window_secs: float
    #: rows, deletes (subjects) and batches sent in the last `window_secs`
    recent_rows_sent: int = 0
    recent_deletes_sent: int = 0
    recent_batches_sent: int = 0
    #: seconds from the oldest row's queueing to ClickHouse's acknowledgment, over the window's batches
    recent_latency_max: float | None = None
    recent_latency_avg: float | None = None
    #: the latest finished verification: when, and whether it ran to its end
    last_verification_at: datetime | None = None
    last_verification_done: bool | None = None
    #: {verdict: subjects} that differ in ClickHouse and were not repaired since
    differing: dict = field(default_factory=dict)

    def unsent_rows(self):
        return sum(counts[state] for counts in self.rows.values() for state in ("pending", "sending", "waiting"))

    def unsent_deletes(self):
        return sum(counts[state] for counts in self.deletes.values() for state in ("pending", "sending", "waiting"))

    def failed_rows(self):
        return sum(counts["failed"] for counts in self.rows.values())

    def total_failed_batches(self):
        return sum(self.failed_batches.values())

    def seconds_since(self, moment):
        return None if moment is None else max((self.checked_at - moment).total_seconds(), 0.0)


def read():
    """The outbox's readings now, by the database's clock."""
    checked_at = db_now()
    counts = row_counts()
    since = unsent_since(counts)
    window = conf.value("CLICKHOUSE_OUTBOX_METRICS_WINDOW_SECS")
    readings = Readings(
        checked_at=checked_at,
        rows=by_state(counts[Kind.INSERT], "rows"),
        deletes=by_state(counts[Kind.DELETE], "rows"),
        failed_batches={kind: sum(states.get("failed", {}).get("batches", 0) for states in counts[kind].values())
                        for kind in (Kind.INSERT, Kind.DELETE)},
        oldest_unsent_age=0.0 if since is None else max((checked_at - since).total_seconds(), 0.0),
        requested_snapshots=Snapshot.objects.filter(status=Snapshot.Status.REQUESTED).count(),
        clickhouse_failing=waiting_after_failure().filter(server_error=True).exists(),
        last_sent_at=last_sent_at(),
        window_secs=window,
        differing=differing_verdicts(),
    )
    read_recent(readings, checked_at - timedelta(seconds=window))
    read_last_verification(readings)
    return readings


def by_state(counts, unit):
    """{table: {state: n}} with every state, from row_counts()'s {table: {state: {unit: n}}}."""
    return {table: {state: states.get(state, {}).get(unit, 0) for state in STATES}
            for table, states in sorted(counts.items())}


def read_recent(readings, since):
    """What was sent since `since` (by the sent index), and its delivery latency (on the latest batches)."""
    sent = Batch.objects.filter(status=Batch.Status.SENT, sent_at__gte=since)
    for kind, batches, rows in (sent.order_by().values("kind").annotate(batches=Count("id"), rows=Sum("row_count"))
                                .values_list("kind", "batches", "rows")):
        readings.recent_batches_sent += batches
        if kind == Kind.DELETE:
            readings.recent_deletes_sent += rows or 0
        else:
            readings.recent_rows_sent += rows or 0
    # Per batch, its entries by the batch index: a join lets PostgreSQL hash every entry of the table.
    first = (OutboxEntry.objects.filter(batch_id=OuterRef("pk")).order_by().values("batch_id")
             .annotate(first=Min("created")).values("first"))
    latest = sent.order_by("-sent_at").annotate(first=Subquery(first)).values_list("sent_at", "first")
    latencies = [max((sent_at - first).total_seconds(), 0.0) for sent_at, first in latest[:LATENCY_SAMPLE]
                 if first is not None]
    if latencies:
        readings.recent_latency_max = max(latencies)
        readings.recent_latency_avg = sum(latencies) / len(latencies)


def read_last_verification(readings):
    """The latest verification job that ended (few jobs are kept: finished ones are purged)."""
    job = (DumpJob.objects.filter(action=DumpJob.Action.VERIFY, finished_at__isnull=False)
           .order_by("-finished_at", "-id").only("finished_at", "status").first())
    if job is not None:
        readings.last_verification_at = job.finished_at
        readings.last_verification_done = job.status == DumpJob.Status.DONE
