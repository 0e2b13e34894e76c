"""
pytest fixtures for the ClickHouse backends (loaded by pytest.ini: `-p tests.clickhouse_fixtures`).

`http_backend` talks to the real old server that `scripts/clickhouse-test-server` runs
(Debian's 18.16), each test in a database of its own; `chdb_backend` uses an embedded
current engine in a temporary store; `backend` runs a test on both. `cluster_backends` talks
to the two replicas of the replicated cluster that `scripts/clickhouse-test-cluster` runs (ZooKeeper
and two 18.16 servers). A missing test server or cluster is a failure, not a skip: a suite that
silently skips its server tests proves nothing.
The plugin is loaded for every test run, so it imports the plugin's code only in fixtures.
"""

import os
import uuid

import pytest

START_HINT = "start it: scripts/clickhouse-test-server start; eval $(scripts/clickhouse-test-server env)"
SERVER_ENV = ("CLICKHOUSE_TEST_URL", "CLICKHOUSE_TEST_USERNAME", "CLICKHOUSE_TEST_PASSWORD")


@pytest.fixture(scope="session")
def clickhouse_server_config():
    """EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG for the test server, from the CLICKHOUSE_TEST_* variables."""
    missing = [name for name in SERVER_ENV if not os.environ.get(name)]
    if missing:
        unset = ", ".join(missing)
        pytest.fail(f"The ClickHouse test server is not configured ({unset} unset): {START_HINT}", pytrace=False)
    return {
        "url": os.environ["CLICKHOUSE_TEST_URL"],
        "username": os.environ["CLICKHOUSE_TEST_USERNAME"],
        "password": os.environ["CLICKHOUSE_TEST_PASSWORD"],
        "database": "default",
        "timeout_secs": 10,
        "connect_timeout_secs": 3,
    }


@pytest.fixture
def clickhouse_database_name():
    return f"outbox_test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def http_backend(clickhouse_server_config, clickhouse_database_name):
    """An HttpBackend on a fresh database of the test server, dropped after the test."""
    from clickhouse_outbox.clickhouse.backends import build_backend
    from clickhouse_outbox.clickhouse.backends.base import quote_identifier
    from clickhouse_outbox.clickhouse.errors import ClickHouseError

    backend = build_backend(dict(clickhouse_server_config, database=clickhouse_database_name))
    try:
        backend.command(f"CREATE DATABASE {quote_identifier(clickhouse_database_name)}")
    except ClickHouseError as exc:
        backend.close()
        pytest.fail(f"Cannot use the ClickHouse test server: {exc}\n{START_HINT}", pytrace=False)
    yield backend
    try:
        backend.command(f"DROP DATABASE IF EXISTS {quote_identifier(clickhouse_database_name)}")
    finally:
        backend.close()


@pytest.fixture
def chdb_backend(tmp_path, clickhouse_database_name):
    """A ChdbBackend on a fresh store in tmp_path, with its database created."""
    from clickhouse_outbox.clickhouse.backends import build_backend
    from clickhouse_outbox.clickhouse.backends.base import quote_identifier

    backend = build_backend({"url": f"chdb://{tmp_path / 'chdb'}", "database": clickhouse_database_name})
    backend.command(f"CREATE DATABASE {quote_identifier(clickhouse_database_name)}")
    yield backend
    backend.close()


@pytest.fixture(params=[pytest.param("server-18.16", marks=pytest.mark.clickhouse_server),
                        pytest.param("chdb", marks=pytest.mark.chdb)])
def backend(request):
    """Each test twice: against the old real server and against the embedded current engine."""
    return request.getfixturevalue("http_backend" if request.param == "server-18.16" else "chdb_backend")


# -- the replicated cluster (scripts/clickhouse-test-cluster) ---------------------------------

CLUSTER_SCRIPT = "scripts/clickhouse-test-cluster"
CLUSTER_START_HINT = f"start it: {CLUSTER_SCRIPT} start; eval $({CLUSTER_SCRIPT} env)"
CLUSTER_ENV = (
    "CLICKHOUSE_CLUSTER_URLS",
    "CLICKHOUSE_CLUSTER_USERNAME",
    "CLICKHOUSE_CLUSTER_PASSWORD",
    "CLICKHOUSE_CLUSTER_NAME",
)


@pytest.fixture(scope="session")
def cluster_config():
    """
    The test cluster, from the CLICKHOUSE_CLUSTER_* variables: {"cluster": its name, "urls":
    [replica 1's HTTP URL, replica 2's], "username", "password", "timeout_secs",
    "connect_timeout_secs"}. `replica_backend_config(cluster_config, i, database)` turns it
    into one replica's EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG.
    """
    missing = [name for name in CLUSTER_ENV if not os.environ.get(name)]
    if missing:
        unset = ", ".join(missing)
        pytest.fail(f"The ClickHouse test cluster is not configured ({unset} unset): {CLUSTER_START_HINT}",
                    pytrace=False)
    urls = [url.strip() for url in os.environ["CLICKHOUSE_CLUSTER_URLS"].split(",") if url.strip()]
    if len(urls) < 2:
        pytest.fail(f"CLICKHOUSE_CLUSTER_URLS lists {len(urls)} replica(s), the tests need 2: {CLUSTER_START_HINT}",
                    pytrace=False)
    return {
        "cluster": os.environ["CLICKHOUSE_CLUSTER_NAME"],
        "urls": urls,
        "username": os.environ["CLICKHOUSE_CLUSTER_USERNAME"],
        "password": os.environ["CLICKHOUSE_CLUSTER_PASSWORD"],
        # ON CLUSTER DDL answers once every replica ran it: more time than a plain statement.
        "timeout_secs": 30,
        "connect_timeout_secs": 3,
    }


def replica_backend_config(cluster_config, index, database):
    """EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG for replica `index` (0-based) of the test cluster."""
    return {
        "url": cluster_config["urls"][index],
        "username": cluster_config["username"],
        "password": cluster_config["password"],
        "database": database,
        "timeout_secs": cluster_config["timeout_secs"],
        "connect_timeout_secs": cluster_config["connect_timeout_secs"],
    }


def replicas_agree(backends, tables, timeout):
    """
    Per replica {table: rows} once every replica holds as many rows of each of `tables` as the
    others and has nothing queued (18.16 has no SYSTEM SYNC REPLICA, so this polls). Every
    table a test reads: a replica may not have pulled one table's insert when another agrees
    (an entry not yet pulled from ZooKeeper is in no queue).
    """
    import time

    from clickhouse_outbox.clickhouse.backends.base import qualified_name, quote_string

    def held(backend, table):
        return int(backend.query(f"SELECT count() AS n FROM {qualified_name(backend.database, table)}")[0]["n"])

    def queued(backend):
        rows = backend.query(f"SELECT sum(queue_size) AS n FROM system.replicas "
                             f"WHERE database = {quote_string(backend.database)}")
        return int(rows[0]["n"] or 0)

    deadline = time.monotonic() + timeout
    while True:
        counts = [{table: held(backend, table) for table in tables} for backend in backends]
        waiting = [queued(backend) for backend in backends]
        if all(count == counts[0] for count in counts) and not any(waiting):
            return counts
        assert time.monotonic() < deadline, f"the replicas did not converge in {timeout}s: {counts}, queues {waiting}"
        time.sleep(0.1)


def ensure_cluster_running(cluster_config):
    """Start whatever part of the test cluster a test left stopped (`stop-replica N`); a no-op when all is up."""
    import subprocess
    from pathlib import Path

    import requests

    for url in cluster_config["urls"]:
        try:
            if requests.get(f"{url.rstrip('/')}/ping", timeout=2).ok:
                continue
        except requests.RequestException:
            pass
        script = Path(__file__).resolve().parent.parent / CLUSTER_SCRIPT
        subprocess.run([str(script), "start"], check=True, capture_output=True, timeout=120)  # noqa: S603
        return


@pytest.fixture
def cluster_backends(cluster_config, clickhouse_database_name):
    """
    [HttpBackend on replica 1, HttpBackend on replica 2], both on a fresh database created
    ON CLUSTER (no tables: `create_schema(backends[0], cluster=cluster_config["cluster"])`
    makes them), dropped ON CLUSTER after the test, restarting a replica the test left stopped.
    """
    from clickhouse_outbox.clickhouse.backends import build_backend
    from clickhouse_outbox.clickhouse.backends.base import quote_identifier
    from clickhouse_outbox.clickhouse.errors import ClickHouseError

    cluster = quote_identifier(cluster_config["cluster"])
    database = quote_identifier(clickhouse_database_name)
    backends = [
        build_backend(replica_backend_config(cluster_config, index, clickhouse_database_name))
        for index in range(len(cluster_config["urls"]))
    ]
    try:
        backends[0].command(f"CREATE DATABASE IF NOT EXISTS {database} ON CLUSTER {cluster}")
    except ClickHouseError as exc:
        for backend in backends:
            backend.close()
        pytest.fail(f"Cannot use the ClickHouse test cluster: {exc}\n{CLUSTER_START_HINT}", pytrace=False)
    yield backends
    try:
        ensure_cluster_running(cluster_config)
        backends[0].command(f"DROP DATABASE IF EXISTS {database} ON CLUSTER {cluster}")
    finally:
        for backend in backends:
            backend.close()
