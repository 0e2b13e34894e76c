"""
The drain's StatsD metrics received by a real StatsD collector: collectd's statsd plugin
(Debian's collectd-core, which scripts/install-system-packages installs), run headless by the
test on a free UDP port of the loopback, writing what it aggregates every second as CSV files
(its csv plugin). The gauges must come out equal to the outbox's state, the counters as
collectd's cumulative derives, the timer as a latency in seconds: the lines are parsed by a
collector, not by the test's own parser (test_drain_reporting.py). Where the package is
missing the test skips, except in CI (CI set), where it fails: a suite that silently skips it
proves nothing.
"""

import glob
import math
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from clickhouse_outbox.models import Kind, OutboxEntry
from clickhouse_outbox.monitoring.readings import STATES
from clickhouse_outbox.monitoring.report import report_drain
from clickhouse_outbox.outbox.drain import drain
from tests.factories import BatchFactory, CourseSnapshotFactory
from tests.monitoring.conftest import age_unsent
from tests.processes import free_port, system_binary

COLLECTD = "/usr/sbin/collectd"
HOSTNAME = "outbox-test"
PREFIX = "edx.outbox"
#: Bound of the wait for collectd to listen, in seconds.
READY_WAIT = 20
#: Bound of the wait for the metrics sent to be written as CSV (collectd writes every second), in seconds.
ARRIVAL_WAIT = 10
#: What collectd's log says once the statsd plugin has bound its socket and the read loop runs.
READY_LINES = ("statsd plugin: Listening on", "Initialization complete")
#: A CSV file's date suffix (one file per metric and day).
DATED = re.compile(r"-(\d{4}-\d{2}-\d{2})$")

CONFIG = """\
Hostname "{hostname}"
FQDNLookup false
BaseDir "{directory}"
PIDFile "{directory}/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
Interval 1

LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File "{directory}/collectd.log"
  Timestamp true
  PrintSeverity true
</Plugin>

LoadPlugin statsd
<Plugin statsd>
  Host "127.0.0.1"
  Port "{port}"
  TimerCount true
</Plugin>

LoadPlugin csv
<Plugin csv>
  DataDir "{directory}/csv"
  StoreRates false
</Plugin>
"""


class Collectd:
    """A collectd of the test's own: its config, log and CSV files in `directory`, its statsd plugin on the loopback."""

    def __init__(self, binary, directory):
        self.directory = Path(directory)
        self.directory.mkdir()
        self.port = free_port(socket.SOCK_DGRAM)
        self.config_path = self.directory / "collectd.conf"
        self.config_path.write_text(CONFIG.format(hostname=HOSTNAME, directory=self.directory, port=self.port))
        self.log_path = self.directory / "collectd.log"  # the logfile plugin's
        self.output_path = self.directory / "collectd.out"  # stdout and stderr: what comes before the plugin
        self.output_file = open(self.output_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(  # noqa: S603 (Debian's collectd)
            [binary, "-C", str(self.config_path), "-f"],
            cwd=self.directory, stdout=self.output_file, stderr=subprocess.STDOUT,
        )

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()  # the process this test started, by its own handle
                self.process.wait(timeout=10)
        self.output_file.close()

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def output(self):
        """What collectd said: its stdout and stderr, then its log."""
        return (f"--- stdout/stderr:\n{self.output_path.read_text(errors='replace')}"
                f"--- {self.log_path.name}:\n{self.log()}")

    def wait(self, what, check, bound):
        """check()'s first truthy answer, within `bound` seconds; an AssertionError with the log if none."""
        deadline = time.monotonic() + bound
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"collectd exited ({self.process.returncode}) before {what}:\n{self.output()}")
            last = check()
            if last:
                return last
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {bound} s (CSV files: {self.files()}):\n{self.output()}")
            time.sleep(0.2)

    def ready(self):
        def check():
            log = self.log()
            if "statsd plugin: Unable to open listening sockets" in log:  # its UDP port taken since it was chosen
                raise AssertionError(f"collectd's statsd plugin could not listen:\n{self.output()}")
            return all(line in log for line in READY_LINES)
        return self.wait("readiness", check, READY_WAIT)

    def files(self):
        """{(type, name): [paths, oldest day first]} of the statsd plugin's CSV files."""
        found = {}
        for path in sorted(glob.glob(str(self.directory / "csv" / HOSTNAME / "statsd" / "*"))):
            stem = DATED.sub("", Path(path).name)
            kind, _, name = stem.partition("-")
            found.setdefault((kind, name), []).append(path)
        return found

    def series(self, kind, name):
        """[(epoch, value)] collectd wrote for `name`, of type `kind` (gauge, derive, latency): whole lines only."""
        values = []
        for path in self.files().get((kind, name), ()):
            lines = Path(path).read_text().split("\n")[:-1]  # the last one may be half written
            assert lines[0] == "epoch,value", (path, lines[:3])
            values += [(float(epoch), float(value)) for epoch, value in (line.split(",") for line in lines[1:])]
        return values

    def arrived(self, expected):
        """{(type, name): [(epoch, value)]} once every one of `expected` has a line, within ARRIVAL_WAIT seconds."""
        def check():
            found = {key: self.series(*key) for key in expected}
            return found if all(found.values()) else None
        return self.wait(f"lines for all of {sorted(expected)}", check, ARRIVAL_WAIT)


@pytest.fixture
def collectd(tmp_path, settings):
    """A ready collectd listening for StatsD, and the settings that point the drain's StatsD client at it."""
    server = Collectd(system_binary(COLLECTD, "collectd-core"), tmp_path / "collectd")
    try:
        server.ready()
        settings.CLICKHOUSE_OUTBOX_STATSD_HOST = "127.0.0.1"
        settings.CLICKHOUSE_OUTBOX_STATSD_PORT = server.port
        settings.CLICKHOUSE_OUTBOX_STATSD_PREFIX = PREFIX
        yield server
    finally:
        server.stop()


@pytest.mark.slow  # starts a collectd and waits for its writes
@pytest.mark.chdb
@pytest.mark.django_db
def test_collectd_receives_the_drain_metrics(chdb_clickhouse, collectd):
    """
    A drain run into embedded ClickHouse, then the report the drain task sends after it
    (`report_drain`: the readings, the custom attributes and StatsD), once the outbox holds
    pending rows of several tables and a failed batch: collectd's values are the state's.
    """
    sent = CourseSnapshotFactory(course__blocks=10)
    started = time.monotonic()
    result = drain()
    seconds = time.monotonic() - started
    assert result.batches_sent == 3 and result.rows_sent == sent.row_count
    snapshot = CourseSnapshotFactory(course__blocks=12)  # pending
    BatchFactory(row_count=4)  # a batch of course_blocks failed for good
    age_unsent(600)
    pending = {}
    for entry in snapshot.entries.filter(status=OutboxEntry.Status.PENDING):
        assert entry.kind == Kind.INSERT  # no deletes: no deletes.* gauges
        pending[entry.table] = pending.get(entry.table, 0) + entry.row_count
    assert len(pending) >= 2  # pending rows of several tables
    gauges = {f"rows.{table}.{state}": 0 for table in {*pending, "course_blocks"} for state in STATES}
    gauges.update({f"rows.{table}.pending": rows for table, rows in pending.items()})
    gauges["rows.course_blocks.failed"] = 4
    gauges.update({"failed_batches.insert": 1, "failed_batches.delete": 0, "requested_snapshots": 0,
                   "clickhouse_failing": 0, "differing_subjects": 0})
    counters = {"drain.runs": 1, "drain.batches_sent": 3, "drain.rows_sent": sent.row_count, "drain.deletes_sent": 0,
                "drain.batches_retrying": 0, "drain.batches_failed": 0}

    sent_at = time.time()
    report_drain(result, seconds)

    expected = {("gauge", f"{PREFIX}.{name}") for name in gauges}
    expected |= {("gauge", f"{PREFIX}.oldest_unsent_age_seconds"),
                 ("gauge", f"{PREFIX}.recent_delivery_latency_max_seconds"),
                 ("gauge", f"{PREFIX}.drain.duration-count")}  # TimerCount: the timer's samples in the interval
    expected |= {("derive", f"{PREFIX}.{name}") for name in counters}
    expected.add(("latency", f"{PREFIX}.drain.duration-average"))
    found = collectd.arrived(expected)
    assert set(collectd.files()) == expected  # nothing else, nothing garbled: last_verification_age_seconds unset

    def values(kind, name):
        series = found[(kind, f"{PREFIX}.{name}")]
        assert all(epoch >= sent_at - 1 for epoch, _ in series), series  # written after the report, not before
        return [value for _, value in series]

    for name, value in gauges.items():  # a gauge keeps its value from one interval to the next
        assert set(values("gauge", name)) == {value}, name
    for name, value in counters.items():  # counters are cumulative derives (StoreRates false)
        assert set(values("derive", name)) == {value}, name
    [age] = set(values("gauge", "oldest_unsent_age_seconds"))
    assert 600 <= age < 600 + 60
    [latency_max] = set(values("gauge", "recent_delivery_latency_max_seconds"))
    assert 0 < latency_max < 60
    # The timer: its average in seconds (to the millisecond) in the interval it arrived in, NaN in the next ones.
    [duration, *later] = values("latency", "drain.duration-average")
    assert abs(duration - seconds) <= 0.0011, (duration, seconds)
    assert all(math.isnan(value) for value in later), later
    [count, *later] = values("gauge", "drain.duration-count")
    assert count == 1 and set(later) <= {0}
