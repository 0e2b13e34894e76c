"""
/clickhouse_outbox/metrics read by Prometheus itself (Debian's prometheus package, which
scripts/install-system-packages installs): the real server scrapes the project's app, served by
pytest-django's live server, with the bearer token from a credentials file as a site configures
it (docs/how-tos/monitoring.rst), and its query API answers with the outbox's state; a scrape
with a wrong token marks the target down. `promtool check metrics` lints the exposition the
endpoint serves. Where the package is missing these tests skip, except in CI (CI set), where
they fail: a suite that silently skips them proves nothing.
"""

import json
import subprocess
import time
import urllib.parse
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest

from clickhouse_outbox.clickhouse.tables import all_tables
from clickhouse_outbox.db import db_now
from clickhouse_outbox.models import DumpJob, OutboxEntry
from clickhouse_outbox.outbox.drain import drain
from tests.factories import BatchFactory, CourseSnapshotFactory
from tests.monitoring.conftest import TOKEN, age_unsent, bearer
from tests.processes import free_port, system_binary

URL = "/clickhouse_outbox/metrics"
#: Bound of each wait on Prometheus (ready, targets scraped, samples queryable), in seconds.
WAIT = 30


def prometheus_binary(name):
    """The path of Debian's `name` (prometheus, promtool)."""
    return system_binary(f"/usr/bin/{name}", "prometheus")


class Prometheus:
    """A Prometheus server of the test's own: its config, TSDB and log in `directory`, its API on the loopback."""

    def __init__(self, binary, directory, scrape_configs):
        self.directory = Path(directory)
        self.directory.mkdir()
        config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}, "scrape_configs": scrape_configs}
        (self.directory / "prometheus.yml").write_text(json.dumps(config, indent=2))  # JSON is YAML
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.directory / "prometheus.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(  # noqa: S603 (Debian's prometheus)
            [binary, f"--config.file={self.directory / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.directory / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            cwd=self.directory, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()  # the process this test started, by its own handle
                self.process.wait(timeout=10)
        self.log.close()

    def output(self):
        return self.log_path.read_text(errors="replace")

    def get(self, path, **params):
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (our own loopback server)
            return response.status, response.read()

    def api(self, path, **params):
        status, body = self.get(f"/api/v1/{path}", **params)
        answer = json.loads(body)
        assert status == 200 and answer["status"] == "success", answer
        return answer["data"]

    def wait(self, what, check):
        """check()'s first truthy answer, within WAIT seconds; an AssertionError with the log if none."""
        deadline = time.monotonic() + WAIT
        last = None
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited ({self.process.returncode}) before {what}:\n{self.output()}")
            try:
                last = check()
            except OSError as exc:  # not listening yet
                last = exc
            else:
                if last:
                    return last
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {WAIT} s (last: {last!r}):\n{self.output()}")
            time.sleep(0.25)

    def ready(self):
        return self.wait("ready", lambda: self.get("/-/ready")[0] == 200)

    def targets(self, expected):
        """{job: target} once every job's target has the health `expected` says ({job: "up" or "down"})."""
        def check():
            found = {target["labels"]["job"]: target for target in self.api("targets")["activeTargets"]}
            health = {job: target["health"] for job, target in found.items()}
            return found if health == expected else None
        return self.wait(f"targets {expected}", check)

    def query(self, expression):
        """{labels other than __name__, job and instance, as sorted (name, value) pairs: value} of an instant query."""
        def check():
            return self.api("query", query=expression)["result"]
        result = self.wait(f"samples of {expression}", check)
        hidden = {"__name__", "job", "instance"}
        return {tuple(sorted((name, value) for name, value in series["metric"].items() if name not in hidden)):
                float(series["value"][1]) for series in result}


@pytest.fixture
def prometheus(tmp_path):
    """start(scrape_configs): a ready Prometheus scraping them; every one started is stopped at the end."""
    binary = prometheus_binary("prometheus")
    started = []

    def start(scrape_configs):
        server = Prometheus(binary, tmp_path / f"prometheus-{len(started)}", scrape_configs)
        started.append(server)
        server.ready()
        return server

    yield start
    for server in started:
        server.stop()


def scrape_job(name, port, token_file):
    """A scrape config as docs/how-tos/monitoring.rst shows it: the token read from a file, sent as a bearer token."""
    return {
        "job_name": name,
        "metrics_path": URL,
        "scheme": "http",
        "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
        "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
    }


def secret_file(path, text):
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.mark.slow  # starts a Prometheus server and waits for its scrapes
@pytest.mark.django_db(transaction=True)  # the live server's thread reads what this test commits
def test_prometheus_scrapes_the_outbox_state(live_server, token, prometheus, tmp_path):
    snapshot = CourseSnapshotFactory(course__blocks=12)
    BatchFactory(row_count=4)  # a batch of course_blocks failed for good
    age_unsent(600)
    pending = {table.name: 0 for table in all_tables()}
    for entry in snapshot.entries.filter(status=OutboxEntry.Status.PENDING):
        pending[entry.table] += entry.row_count
    assert len([rows for rows in pending.values() if rows]) >= 2  # pending rows of several tables

    port = live_server.thread.port
    server = prometheus([
        scrape_job("outbox", port, secret_file(tmp_path / "token", TOKEN)),
        scrape_job("outbox-wrong-token", port, secret_file(tmp_path / "wrong-token", "not-the-token")),
    ])
    targets = server.targets({"outbox": "up", "outbox-wrong-token": "down"})

    assert targets["outbox"]["lastError"] == ""
    assert targets["outbox"]["scrapeUrl"] == f"http://127.0.0.1:{port}{URL}"  # no secret in the URL
    assert "401" in targets["outbox-wrong-token"]["lastError"], targets["outbox-wrong-token"]
    assert server.query('up{job="outbox"}') == {(): 1}
    assert server.query('up{job="outbox-wrong-token"}') == {(): 0}

    rows = server.query('clickhouse_outbox_rows{job="outbox", state="pending"}')
    assert rows == {(("state", "pending"), ("table", table)): value for table, value in pending.items()}
    failed = server.query('clickhouse_outbox_rows{job="outbox", state="failed"}')
    assert failed[(("state", "failed"), ("table", "course_blocks"))] == 4
    assert sum(failed.values()) == 4
    assert server.query('clickhouse_outbox_failed_batches{job="outbox"}') == {
        (("kind", "insert"),): 1, (("kind", "delete"),): 0,
    }
    [age] = server.query('clickhouse_outbox_oldest_unsent_age_seconds{job="outbox"}').values()
    assert 600 <= age < 600 + 4 * WAIT
    assert server.query('clickhouse_outbox_clickhouse_failing{job="outbox"}') == {(): 0}
    assert server.query('sum(clickhouse_outbox_deletes{job="outbox"})') == {(): 0}
    refused = 'count({job="outbox-wrong-token", __name__=~"clickhouse_outbox_.*"}) or vector(0)'
    assert server.query(refused) == {(): 0}  # nothing of the outbox without the token


# --- promtool check metrics ----------------------------------------------------------------


def promtool_check_metrics(exposition):
    return subprocess.run([prometheus_binary("promtool"), "check", "metrics"], input=exposition,  # noqa: S603
                          capture_output=True, timeout=120)


@pytest.mark.chdb
@pytest.mark.django_db
def test_promtool_finds_no_problem_in_the_exposition(client, token, chdb_clickhouse):
    """Every family the endpoint can serve, the conditional ones included, linted as Prometheus lints them."""
    CourseSnapshotFactory(course__blocks=10)
    assert drain().batches_sent == 3  # sent batches: last_sent_timestamp and the recent latency
    CourseSnapshotFactory(course__blocks=5)  # pending
    BatchFactory(row_count=3)  # failed for good
    DumpJob.objects.create(action=DumpJob.Action.VERIFY, status=DumpJob.Status.DONE, active=None,
                           origin="periodic", finished_at=db_now() - timedelta(hours=1))
    response = client.get(URL, **bearer())
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain; version=0.0.4")
    exposition = response.content
    for family in ("rows", "deletes", "failed_batches", "oldest_unsent_age_seconds", "last_sent_timestamp_seconds",
                   "recent_delivery_latency_max_seconds", "last_verification_completed", "differing_subjects"):
        assert f"\n# TYPE clickhouse_outbox_{family} gauge\n".encode() in exposition, family

    run = promtool_check_metrics(exposition)

    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout == b"" and run.stderr == b""  # no lint problem reported

    # The check can fail: the same exposition with a gauge named as a counter is reported.
    renamed = exposition.replace(b"clickhouse_outbox_failed_batches", b"clickhouse_outbox_failed_batches_total")
    run = promtool_check_metrics(renamed)
    assert run.returncode != 0
    assert b'clickhouse_outbox_failed_batches_total non-counter metrics should not have "_total" suffix' in run.stderr
