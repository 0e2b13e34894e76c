"""
The outbox in the monitoring sites already run: its readings (`readings`) as Prometheus
metrics read at scrape time (`prometheus`, served by `views`), as StatsD gauges the drain
pushes (`statsd_push`), as custom attributes on the drain task (`attributes`), and as a
health verdict for probes (`health`). See docs/decisions/0019-monitoring.rst.
"""
