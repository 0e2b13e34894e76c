"""
Shared fixtures: the outbox on the database named by DATABASE_URL (SQLite, MariaDB or
PostgreSQL: `make test` runs the suite on each), and a ClickHouse to drain into.
"""

import os
from contextlib import contextmanager

import pytest

from clickhouse_outbox.clickhouse.backends import reset_backends
from clickhouse_outbox.sources.olx import SAMPLE_COURSE_DIR


# A test that requests one of these fixtures, directly or through another fixture, needs that
# service: the hook below marks it, so `-m "not clickhouse_server and not clickhouse_cluster"`
# (make test-fast) leaves it out and no test can forget its mark. A fixture that asks for the
# server only at run time (request.getfixturevalue) marks its own params instead (`clickhouse`, `backend`).
NEEDS_SERVICE = {
    "clickhouse_server_config": "clickhouse_server",  # the shared test server (CLICKHOUSE_TEST_*)
    "own_clickhouse_server": "clickhouse_server",  # a server of its own: needs Debian's clickhouse-server
    "cluster_config": "clickhouse_cluster",  # the replicated test cluster (CLICKHOUSE_CLUSTER_*)
}


def pytest_collection_modifyitems(config, items):
    """Mark every test by the services its fixtures need (see NEEDS_SERVICE)."""
    for item in items:
        requested = set(getattr(item, "fixturenames", ()))
        for mark in sorted({mark for fixture, mark in NEEDS_SERVICE.items() if fixture in requested}):
            if item.get_closest_marker(mark) is None:
                item.add_marker(mark)


def pytest_addoption(parser):
    parser.addoption(
        "--shard", metavar="I/N",
        help="run only share I of N of the selected tests (whole test files, balanced by their number of "
             "selected tests): N runs side by side run each selected test once (make test-fast-I)",
    )


def pytest_configure(config):
    if config.getoption("shard"):
        config.pluginmanager.register(Shard(config.getoption("shard")), "clickhouse_outbox-shard")


class Shard:
    """--shard I/N: after -m and -k have deselected, keep the test files that fall to share I."""

    def __init__(self, spec):
        try:
            self.index, self.count = (int(part) for part in spec.split("/"))
        except ValueError:
            raise pytest.UsageError(f"--shard wants I/N (e.g. 1/2), not {spec!r}") from None
        if not 1 <= self.index <= self.count:
            raise pytest.UsageError(f"--shard {spec}: I must be between 1 and N")

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config, items):
        files = {}
        for item in items:
            files.setdefault(item.nodeid.split("::")[0], []).append(item)
        # The largest file first to the share with the fewest tests so far (ties: the lower share).
        sizes = [0] * self.count
        share_of = {}
        for name in sorted(files, key=lambda name: (-len(files[name]), name)):
            share = min(range(self.count), key=lambda n: (sizes[n], n))
            share_of[name] = share
            sizes[share] += len(files[name])
        kept = [item for item in items if share_of[item.nodeid.split("::")[0]] == self.index - 1]
        dropped = [item for item in items if share_of[item.nodeid.split("::")[0]] != self.index - 1]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def cluster_lock_file():
    """
    The machine-wide lock of the replicated test cluster named by CLICKHOUSE_CLUSTER_URLS: one
    lock per cluster, so runs on another cluster (other ports) do not wait for this one's.
    """
    from tests.processes import lock_file

    urls = os.environ.get("CLICKHOUSE_CLUSTER_URLS", "").split(",")[0].strip()
    return lock_file("cluster-" + (urls.split("://")[-1].rstrip("/") or "unconfigured"))


@pytest.fixture(autouse=True)
def _cluster_held_alone(request):
    """
    A test marked clickhouse_cluster holds the test cluster alone on the machine, from before
    its fixtures create a database to after they drop it: the cluster is one for every pytest
    run (`make test` runs its SQLite, MariaDB and PostgreSQL lanes at once), and a fault test
    stops a replica (tests/faults/test_failover.py), which would fail the other runs' cluster tests.
    Autouse, so it is set up before (and torn down after) the cluster fixtures the test requests.
    """
    if request.node.get_closest_marker("clickhouse_cluster") is None:
        yield
        return
    from tests.processes import machine_lock

    with machine_lock(cluster_lock_file(), holder="another test on the test cluster"):
        yield


@pytest.fixture(autouse=True)
def _celery_broker_in_memory():
    """
    Tasks this process sends (a dump job started in a test) go to kombu's in-memory
    transport, never to a Redis other runs and workers share; tests that run real celery
    processes ask for `celery_broker` instead.
    """
    from outbox_project.celery import app

    previous = app.conf.broker_url
    app.conf.broker_url = "memory://"
    yield
    app.conf.broker_url = previous


@pytest.fixture(autouse=True)
def _fresh_backends():
    """Each test builds its ClickHouse backends from its own settings."""
    reset_backends()
    yield
    reset_backends()


@pytest.fixture
def olx_dir(tmp_path, settings):
    """An empty course folder for the OLX course source."""
    folder = tmp_path / "courses"
    folder.mkdir()
    settings.CLICKHOUSE_OUTBOX_COURSE_SOURCE = "clickhouse_outbox.sources.olx.OlxFolderSource"
    settings.CLICKHOUSE_OUTBOX_OLX_DIR = str(folder)
    return folder


@pytest.fixture
def olx_source(olx_dir):
    from clickhouse_outbox.sources.olx import OlxFolderSource

    return OlxFolderSource(root=olx_dir)


@pytest.fixture
def sample_course_key(olx_source):
    """The sample course, added to the course folder (not yet published)."""
    return olx_source.add_export(SAMPLE_COURSE_DIR)


def chdb_config(tmp_path, database):
    return {"url": f"chdb://{tmp_path / 'chdb'}", "database": database,
            "username": "", "password": "", "timeout_secs": 10, "connect_timeout_secs": 3}


@contextmanager
def destination(settings, config, *, drop_database):
    """Point the plugin at `config` and create the contract's tables there; yields the backend."""
    from clickhouse_outbox.clickhouse.backends import build_backend
    from clickhouse_outbox.clickhouse.backends.base import quote_identifier
    from clickhouse_outbox.clickhouse.schema import create_schema

    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = config
    backend = build_backend(config)
    create_schema(backend)
    try:
        yield backend
    finally:
        if drop_database:
            backend.command(f"DROP DATABASE IF EXISTS {quote_identifier(config['database'])}")
        backend.close()
        reset_backends()


@pytest.fixture(params=[pytest.param("server-18.16", marks=pytest.mark.clickhouse_server),
                        pytest.param("chdb", marks=pytest.mark.chdb)])
def clickhouse(request, settings, tmp_path, clickhouse_database_name):
    """
    A ClickHouse with the contract's tables, and settings pointing the plugin at it: the
    real old server (transport, auth) and the embedded current engine (current SQL).
    """
    on_server = request.param == "server-18.16"
    if on_server:
        config = dict(request.getfixturevalue("clickhouse_server_config"), database=clickhouse_database_name)
    else:
        config = chdb_config(tmp_path, clickhouse_database_name)
    with destination(settings, config, drop_database=on_server) as backend:
        yield backend


@pytest.fixture
def chdb_clickhouse(settings, tmp_path, clickhouse_database_name):
    """Only the embedded current engine (for deduplication tokens, Bool...)."""
    with destination(settings, chdb_config(tmp_path, clickhouse_database_name), drop_database=False) as backend:
        yield backend


@pytest.fixture
def server_clickhouse(settings, clickhouse_server_config, clickhouse_database_name):
    """Only the real old server (outages, auth, timeouts)."""
    config = dict(clickhouse_server_config, database=clickhouse_database_name)
    with destination(settings, config, drop_database=True) as backend:
        yield backend


@pytest.fixture
def celery_broker():
    """
    The broker of the celery tests (tests.processes.BROKER_URL), emptied before and after and
    held by one test on the machine at a time; this process's celery app sends to it too.
    """
    import redis

    from outbox_project.celery import app
    from tests.processes import BROKER_URL, machine_lock

    client = redis.Redis.from_url(BROKER_URL)
    previous = app.conf.broker_url
    with machine_lock():
        client.flushdb()
        app.conf.broker_url = BROKER_URL  # dispatch() connects to the app's broker as set now
        try:
            yield BROKER_URL
        finally:
            app.conf.broker_url = previous
            client.flushdb()
            client.close()
