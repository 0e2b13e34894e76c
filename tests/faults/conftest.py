"""
Fixtures for the fault tests: a ClickHouse server of the test's own (so it can be stopped
and restarted without touching the shared one), fault proxies, and fresh destinations.
"""

import os
import subprocess
import time
import uuid

import pytest

from tests.conftest import destination
from tests.processes import ROOT, free_port
from tests.proxy import FaultProxy

SCRIPT = ROOT / "scripts" / "clickhouse-test-server"
OWN_USER = "faults"
OWN_PASSWORD = "faults-test-secret"


class OwnClickHouseServer:
    """
    A second, independent instance of Debian's clickhouse-server (scripts/clickhouse-test-server
    with its own CH_TEST_DIR and ports). `stop()` and `start()` keep the data directory.
    `users_file`: a users.xml of the caller's own instead of the one user OWN_USER.
    """

    def __init__(self, directory, users_file=None):
        self.directory = directory
        self.http_port = free_port()
        self.tcp_port = free_port()
        while self.tcp_port == self.http_port:
            self.tcp_port = free_port()
        self.env = dict(
            os.environ,
            CH_TEST_DIR=str(directory),
            CH_TEST_HTTP_PORT=str(self.http_port),
            CH_TEST_TCP_PORT=str(self.tcp_port),
            CH_TEST_USER=OWN_USER,
            CH_TEST_PASSWORD=OWN_PASSWORD,
        )
        if users_file is not None:
            self.env["CH_TEST_USERS_FILE"] = str(users_file)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.http_port}"

    def config(self, database):
        return {"url": self.url, "username": OWN_USER, "password": OWN_PASSWORD, "database": database,
                "timeout_secs": 10, "connect_timeout_secs": 2}

    def _script(self, action, timeout=60):
        done = subprocess.run(  # noqa: S603 (our own script)
            [str(SCRIPT), action], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0 and action != "status":
            raise AssertionError(f"clickhouse-test-server {action} failed: {done.stdout}{done.stderr}")
        return done

    def start(self):
        self._script("start")

    def stop(self):
        self._script("stop")
        deadline = time.monotonic() + 20
        while self.is_up() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not self.is_up(), "the test's own ClickHouse server did not stop"

    def is_up(self):
        return self._script("status", timeout=10).returncode == 0

    def pid(self):
        pidfile = self.directory / "server.pid"
        return int(pidfile.read_text()) if pidfile.exists() else None


@pytest.fixture
def own_clickhouse_server(tmp_path_factory):
    """A ClickHouse server only this test uses (and may stop); stopped at the end whatever happens."""
    server = OwnClickHouseServer(tmp_path_factory.mktemp("own-clickhouse"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_clickhouse(own_clickhouse_server, settings):
    """The own server with the contract's tables in a fresh database; settings point at it."""
    config = own_clickhouse_server.config(f"outbox_faults_{uuid.uuid4().hex[:10]}")
    with destination(settings, config, drop_database=False) as backend:
        yield backend


@pytest.fixture
def fault_proxy(clickhouse_server_config):
    """A FaultProxy in front of the shared test server, faulting only INSERTs; closed after the test."""
    with FaultProxy(clickhouse_server_config["url"], match=b"INSERT") as proxy:
        yield proxy


@pytest.fixture
def fast_retries(settings):
    """Retries due within a fraction of a second, so a test waits out backoffs instead of editing rows."""
    settings.CLICKHOUSE_OUTBOX_BACKOFF_BASE_SECS = 0.1
    settings.CLICKHOUSE_OUTBOX_BACKOFF_MAX_SECS = 0.5
    return {"CLICKHOUSE_OUTBOX_BACKOFF_BASE_SECS": 0.1, "CLICKHOUSE_OUTBOX_BACKOFF_MAX_SECS": 0.5}
