"""
StatsD, for sites whose metrics go through a StatsD daemon (Telegraf, the Datadog agent,
statsd_exporter): after each run the drain task sends the readings as gauges and the run's
outcome as counters and a timer, over UDP, when CLICKHOUSE_OUTBOX_STATSD_HOST names a host.
Names follow the Prometheus metrics': <prefix>.rows.<table>.<state>, <prefix>.oldest_unsent_age_seconds...

UDP is fire-and-forget: a daemon that is down loses the numbers, never the drain.
"""

import logging

from statsd import StatsClient

from clickhouse_outbox import conf

log = logging.getLogger(__name__)


def client():
    """A StatsClient for the configured host, or None (no host, or its name does not resolve)."""
    host = conf.value("CLICKHOUSE_OUTBOX_STATSD_HOST")
    if not host:
        return None
    port = conf.value("CLICKHOUSE_OUTBOX_STATSD_PORT")
    try:
        return StatsClient(host, port, prefix=conf.value("CLICKHOUSE_OUTBOX_STATSD_PREFIX") or None)
    except OSError as exc:
        log.warning("clickhouse_outbox: no StatsD metrics sent: %s:%s could not be resolved (%s)", host, port, exc)
        return None


def push(result, readings, seconds):
    """Send a drain run's numbers (`result`, lasting `seconds`) and the `readings` after it; False if not sent."""
    stats = client()
    if stats is None:
        return False
    try:
        with stats.pipeline() as pipe:
            pipe.incr("drain.runs")
            pipe.timing("drain.duration", seconds * 1000)
            for name in ("batches_sent", "rows_sent", "deletes_sent", "batches_retrying", "batches_failed"):
                pipe.incr(f"drain.{name}", getattr(result, name))
            if readings is not None:
                for kind, counts in (("rows", readings.rows), ("deletes", readings.deletes)):
                    for table, states in counts.items():
                        for state, value in states.items():
                            pipe.gauge(f"{kind}.{table}.{state}", value)
                for kind, value in readings.failed_batches.items():
                    pipe.gauge(f"failed_batches.{kind}", value)
                pipe.gauge("oldest_unsent_age_seconds", round(readings.oldest_unsent_age, 3))
                pipe.gauge("requested_snapshots", readings.requested_snapshots)
                pipe.gauge("clickhouse_failing", int(readings.clickhouse_failing))
                pipe.gauge("differing_subjects", sum(readings.differing.values()))
                if readings.recent_latency_max is not None:
                    pipe.gauge("recent_delivery_latency_max_seconds", round(readings.recent_latency_max, 3))
                if readings.last_verification_at is not None:
                    pipe.gauge("last_verification_age_seconds",
                               round(readings.seconds_since(readings.last_verification_at), 3))
    finally:
        stats.close()
    return True
