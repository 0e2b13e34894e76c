"""
pytest fixtures for the ClickHouse backends (loaded by pytest.ini: `-p tests.clickhouse_fixtures`).

`http_backend` talks to the real old server that `scripts/clickhouse-test-server` runs
(Debian's 18.16), each test in a database of its own; `chdb_backend` uses an embedded
current engine in a temporary store; `backend` runs a test on both. A missing test server
is a failure, not a skip: a suite that silently skips its server tests proves nothing.
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


@pytest.fixture(params=["server-18.16", "chdb"])
def backend(request):
    """Each test twice: against the old real server and against the embedded current engine."""
    return request.getfixturevalue("http_backend" if request.param == "server-18.16" else "chdb_backend")
