"""
What the drain task reports after each run: the run and the outbox's readings as custom
attributes (monitoring.attributes) and, where configured, StatsD metrics (monitoring.statsd_push).
A failure to report is logged and never fails the drain.
"""

import logging

from django.db import DatabaseError

from clickhouse_outbox.monitoring.attributes import set_drain_attributes
from clickhouse_outbox.monitoring.readings import read
from clickhouse_outbox.monitoring.statsd_push import push

log = logging.getLogger(__name__)


def report_drain(result, seconds):
    try:
        readings = read()
    except DatabaseError as exc:  # the run's own numbers still go out
        log.warning("clickhouse_outbox: the outbox's readings could not be read after the drain: %s", exc)
        readings = None
    set_drain_attributes(result, readings, seconds)
    push(result, readings, seconds)
    return readings
