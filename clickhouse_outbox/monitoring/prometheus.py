"""
The outbox's readings as Prometheus metrics, by a custom collector that reads the database
at scrape time: every web worker (gunicorn forks many) answers with the same numbers, and no
process has to keep counters between scrapes. prometheus-client writes the exposition format.

Every registered table and every differing verdict has its series, zero included, so an
alert rule never sees a series vanish when a backlog empties.
"""

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from clickhouse_outbox.clickhouse.tables import all_tables
from clickhouse_outbox.models import Kind
from clickhouse_outbox.monitoring.readings import STATES, read
from clickhouse_outbox.operations.status import DIFFERING

PREFIX = "clickhouse_outbox"


class OutboxCollector(Collector):
    """Reads the outbox on each `collect()`; register it in any CollectorRegistry (the default one too)."""

    def __init__(self, reader=read):
        self.reader = reader

    def collect(self):
        readings = self.reader()
        yield from per_table(readings.rows, "rows", "Rows of inserts in the outbox, by state: pending (not claimed), "
                             "sending (claimed by a drainer), waiting (to retry after an error), failed (for good).")
        yield from per_table(readings.deletes, "deletes", "Subjects of deletes (a retirement's) in the outbox, "
                             "by state, as rows.")
        failed = gauge("failed_batches", "Batches that failed for good and wait for a requeue, by kind.", ["kind"])
        for kind in Kind:
            failed.add_metric([kind.value], readings.failed_batches.get(kind, 0))
        yield failed
        yield gauge("oldest_unsent_age_seconds", "How long the oldest unsent row (or requested snapshot) has "
                    "waited, by the database's clock; 0 when nothing waits.", value=readings.oldest_unsent_age)
        yield gauge("requested_snapshots", "Snapshots requested by changes and not yet taken by a drain.",
                    value=readings.requested_snapshots)
        yield gauge("clickhouse_failing", "1 while a batch waits to retry after a failure of ClickHouse itself "
                    "(unreachable, overloaded, credentials), else 0.", value=int(readings.clickhouse_failing))
        if readings.last_sent_at is not None:
            yield gauge("last_sent_timestamp_seconds", "When ClickHouse last acknowledged a batch (Unix time).",
                        value=readings.last_sent_at.timestamp())
        yield gauge("recent_window_seconds", "The window of the recent_* metrics.", value=readings.window_secs)
        yield gauge("recent_sent_rows", "Rows inserted in the recent window.", value=readings.recent_rows_sent)
        yield gauge("recent_sent_deletes", "Subjects deleted in the recent window.",
                    value=readings.recent_deletes_sent)
        yield gauge("recent_sent_batches", "Batches sent in the recent window.", value=readings.recent_batches_sent)
        if readings.recent_latency_max is not None:
            yield gauge("recent_delivery_latency_max_seconds", "Longest delivery (from the oldest row's queueing "
                        "to ClickHouse's acknowledgment) of the batches sent in the recent window.",
                        value=readings.recent_latency_max)
            yield gauge("recent_delivery_latency_avg_seconds", "Mean delivery of the batches sent in the recent "
                        "window.", value=readings.recent_latency_avg)
        if readings.last_verification_at is not None:
            yield gauge("last_verification_timestamp_seconds", "When the latest verification ended (Unix time).",
                        value=readings.last_verification_at.timestamp())
            yield gauge("last_verification_completed", "1 if the latest verification ran to its end, 0 if it was "
                        "cancelled or could not list its subjects.", value=int(readings.last_verification_done))
        differing = gauge("differing_subjects", "Subjects a verification found different in ClickHouse and that "
                          "no newer snapshot repaired since, by verdict.", ["verdict"])
        for kind in DIFFERING:
            label = kind.label.lower()
            differing.add_metric([kind.value], readings.differing.get(label, 0))
        yield differing


def gauge(name, documentation, labels=None, value=None):
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value, labels=labels)


def per_table(counts, name, documentation):
    family = gauge(name, documentation, ["table", "state"])
    tables = sorted({table.name for table in all_tables()} | set(counts))
    for table in tables:
        for state in STATES:
            family.add_metric([table, state], counts.get(table, {}).get(state, 0))
    yield family
