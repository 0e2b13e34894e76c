"""
Failover between replicas (`urls`), against the real test server (18.16) and loopback
ports where nothing listens: an unreachable replica is skipped and the request goes to the
next one, the replica that answered is kept, an answer with an error is not failed over,
and when every replica fails the error names each of them and never the password.

FaultProxy (tests/proxy.py) sits in front of the real server where a test must see the
requests as sent, or hold an answer past the read timeout. The HTTP 503 of a load balancer
whose servers are down comes from a small real HTTP server that answers nothing else.
"""

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clickhouse_outbox.clickhouse.backends import build_backend, get_backend, reset_backends
from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.clickhouse.backends.failover import FailoverBackend
from clickhouse_outbox.clickhouse.backends.http import HttpBackend
from clickhouse_outbox.clickhouse.errors import ClickHouseRejected, ClickHouseUnavailable, is_server_wide
from clickhouse_outbox.clickhouse.tables import COURSE_BLOCKS
from clickhouse_outbox.models import Batch, OutboxEntry
from clickhouse_outbox.outbox.drain import drain
from tests.factories import CourseSnapshotFactory
from tests.proxy import FaultProxy

from .conftest import block_row, create_table, encode_rows, new_dump_id, select_blocks
from .test_errors import everything_said_about

FAILOVER_LOGGER = "clickhouse_outbox.clickhouse.backends.failover"


@pytest.fixture
def refusing_port():
    """A loopback port bound but not listening (so no one else takes it): connecting is refused at once."""
    sockets = []

    def make():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    yield make
    for sock in sockets:
        sock.close()


@pytest.fixture
def unavailable_server():
    """A real HTTP server answering 503 to everything, as a load balancer with no healthy server does."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b"no healthy upstream"
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def replicas(server_config, database, *urls, **overrides):
    config = {key: value for key, value in server_config.items() if key != "url"}
    backend = build_backend(dict(config, urls=list(urls), database=database, **overrides))
    assert isinstance(backend, FailoverBackend)
    return backend


def address(url):
    return url.removeprefix("http://")


def insert_blocks(backend, *orders, dump_id=None):
    rows = [block_row(order, dump_id=dump_id) for order in orders]
    return backend.insert(COURSE_BLOCKS, encode_rows(rows), rows=len(rows))


def failover_warnings(caplog):
    return [record.getMessage() for record in caplog.records
            if record.name == FAILOVER_LOGGER and record.levelno == logging.WARNING]


def insert_exchanges(proxy):
    return [request for request in proxy.requests() if "INSERT" in request.params.get("query", "")]


def test_a_dead_first_replica_is_skipped_and_the_live_one_kept(
    http_backend, clickhouse_server_config, refusing_port, caplog
):
    caplog.set_level(logging.INFO)
    create_table(http_backend)
    dead, live = refusing_port(), clickhouse_server_config["url"]
    backend = replicas(clickhouse_server_config, http_backend.database, dead, live)
    assert backend.current.address == address(dead)

    insert_blocks(backend, 1)

    assert [row["order"] for row in select_blocks(http_backend)] == [1]
    assert backend.current.address == address(live)
    warnings = failover_warnings(caplog)
    assert len(warnings) == 2, warnings  # the dead one is unavailable; the live one took it
    assert address(dead) in warnings[0] and "Connection refused" in warnings[0] and address(live) in warnings[0]
    assert address(live) in warnings[1]
    assert clickhouse_server_config["password"] not in caplog.text

    caplog.clear()
    insert_blocks(backend, 2)
    backend.query("SELECT 1")

    assert failover_warnings(caplog) == []  # sticky: the dead replica is not tried again
    assert [row["order"] for row in select_blocks(http_backend)] == [1, 2]
    assert backend.current.address == address(live)


def test_a_live_first_replica_keeps_every_request(http_backend, clickhouse_server_config, refusing_port, caplog):
    caplog.set_level(logging.INFO)
    create_table(http_backend)
    live, dead = clickhouse_server_config["url"], refusing_port()
    backend = replicas(clickhouse_server_config, http_backend.database, live, dead)

    for order in (1, 2, 3):
        insert_blocks(backend, order)

    assert [row["order"] for row in select_blocks(http_backend)] == [1, 2, 3]
    assert backend.current.address == address(live)
    assert failover_warnings(caplog) == []


def test_queries_statements_and_the_version_fail_over_too(http_backend, clickhouse_server_config, refusing_port):
    backend = replicas(clickhouse_server_config, http_backend.database, refusing_port(), clickhouse_server_config["url"])

    assert backend.server_info() == http_backend.server_info()
    backend.command(f"CREATE TABLE {qualified_name(http_backend.database, 't')} (x UInt8) ENGINE = Memory")
    assert backend.query(f"SELECT count() AS n FROM {qualified_name(http_backend.database, 't')}") == [{"n": "0"}]


def test_every_replica_dead_raises_unavailable_naming_each_without_the_password(
    clickhouse_server_config, refusing_port, caplog
):
    caplog.set_level(logging.DEBUG)
    first, second, third = refusing_port(), refusing_port(), refusing_port()
    backend = replicas(clickhouse_server_config, "event_sink", first, second, third)

    with pytest.raises(ClickHouseUnavailable) as caught:
        insert_blocks(backend, 1)

    error = caught.value
    message = str(error)
    assert "No ClickHouse replica could take the INSERT of 1 rows into course_blocks; tried 3" in message
    for url in (first, second, third):
        assert f"Could not reach ClickHouse at {address(url)}" in message
    assert message.count("Connection refused") == 3
    assert error.retryable and is_server_wide(error)  # the drain pauses new claims, as for one server
    assert error.http_status is None
    assert clickhouse_server_config["password"] not in everything_said_about(error, caplog)
    assert clickhouse_server_config["password"] not in repr(backend)
    assert backend.current.address == address(first)  # nothing answered: the order is unchanged


def test_a_503_from_a_load_balancer_fails_over(
    http_backend, clickhouse_server_config, unavailable_server, caplog
):
    caplog.set_level(logging.INFO)
    create_table(http_backend)
    backend = replicas(clickhouse_server_config, http_backend.database, unavailable_server,
                       clickhouse_server_config["url"])

    insert_blocks(backend, 1)

    assert [row["order"] for row in select_blocks(http_backend)] == [1]
    assert "HTTP 503" in failover_warnings(caplog)[0]


def test_503_everywhere_keeps_the_status(clickhouse_server_config, unavailable_server):
    same_server_by_another_name = unavailable_server.replace("127.0.0.1", "localhost")
    backend = replicas(clickhouse_server_config, "event_sink", unavailable_server, same_server_by_another_name)

    with pytest.raises(ClickHouseUnavailable) as caught:
        backend.query("SELECT 1")

    assert caught.value.http_status == 503


def test_rejected_rows_are_not_failed_over(http_backend, clickhouse_server_config, caplog):
    """ClickHouse answered: another replica would refuse the same bytes, and the split needs the rejection."""
    caplog.set_level(logging.INFO)
    create_table(http_backend)
    with FaultProxy(clickhouse_server_config["url"]) as other:
        backend = replicas(clickhouse_server_config, http_backend.database, clickhouse_server_config["url"], other.url)

        with pytest.raises(ClickHouseRejected) as caught:
            backend.insert(COURSE_BLOCKS, encode_rows([block_row(1, dump_id="not-a-uuid")]), rows=1)

        assert caught.value.retryable is False
        assert other.requests() == []
    assert failover_warnings(caplog) == []
    assert select_blocks(http_backend) == []


def test_refused_credentials_are_not_failed_over(clickhouse_server_config):
    with FaultProxy(clickhouse_server_config["url"]) as other:
        backend = replicas(clickhouse_server_config, "default", clickhouse_server_config["url"], other.url,
                           password="not-the-Secret-9f3a")

        with pytest.raises(ClickHouseRejected) as caught:
            backend.query("SELECT 1")

        assert caught.value.http_status == 401
        assert other.requests() == []


def test_a_read_timeout_is_resent_to_the_next_replica_byte_for_byte(
    http_backend, clickhouse_server_config, caplog
):
    """
    The first replica wrote the rows but its answer was late: the next replica gets the same
    body and settings. On this plain MergeTree table that is a second copy; replicated tables
    store it once (tests/faults/test_failover.py shows it on the cluster).
    """
    caplog.set_level(logging.INFO)
    create_table(http_backend)
    dump_id = new_dump_id()
    with FaultProxy(clickhouse_server_config["url"], match=b"INSERT") as slow, \
            FaultProxy(clickhouse_server_config["url"], match=b"INSERT") as other:
        slow.delay_response(5)
        backend = replicas(clickhouse_server_config, http_backend.database, slow.url, other.url,
                           timeout_secs=1, insert_quorum=2)

        insert_blocks(backend, 1, 2, 3, dump_id=dump_id)

        [first], [resent] = insert_exchanges(slow), insert_exchanges(other)
    assert resent.body == first.body
    assert resent.params == first.params
    assert resent.params["insert_quorum"] == "2" and resent.params["insert_quorum_timeout"] == "750"
    assert resent.headers["content-encoding"] == first.headers["content-encoding"] == "gzip"
    assert "did not answer the INSERT of 3 rows" in failover_warnings(caplog)[0]
    assert [row["order"] for row in select_blocks(http_backend, dump_id)] == [1, 1, 2, 2, 3, 3]


def test_sticks_to_the_replica_that_answered_then_wraps_around(http_backend, clickhouse_server_config):
    create_table(http_backend)
    with FaultProxy(clickhouse_server_config["url"], match=b"INSERT") as one, \
            FaultProxy(clickhouse_server_config["url"], match=b"INSERT") as two:
        backend = replicas(clickhouse_server_config, http_backend.database, one.url, two.url)

        one.drop(after_commit=True)  # the answer is lost: the first replica counts as unavailable
        insert_blocks(backend, 1)
        assert (len(insert_exchanges(one)), len(insert_exchanges(two))) == (1, 1)
        assert backend.current.address == address(two.url)

        one.pass_through()
        insert_blocks(backend, 2)  # sticky: the first replica is back, but the second answered last
        assert (len(insert_exchanges(one)), len(insert_exchanges(two))) == (1, 2)

        two.drop(after_commit=True)
        insert_blocks(backend, 3)  # the last replica fails: back to the first
        assert (len(insert_exchanges(one)), len(insert_exchanges(two))) == (2, 3)
        assert backend.current.address == address(one.url)
    # Plain MergeTree keeps the copies of the two lost answers (replicated tables would not).
    assert [row["order"] for row in select_blocks(http_backend)] == [1, 1, 2, 3, 3]


def test_insert_quorum_is_sent_on_inserts_only(http_backend, clickhouse_server_config):
    create_table(http_backend)
    with FaultProxy(clickhouse_server_config["url"]) as proxy:
        config = dict(clickhouse_server_config, url=proxy.url, database=http_backend.database,
                      insert_quorum=2, timeout_secs=8)
        backend = build_backend(config)
        assert isinstance(backend, HttpBackend)  # one url: quorum without failover (a balancer in front)

        insert_blocks(backend, 1)
        backend.query("SELECT 1")

        inserts = insert_exchanges(proxy)
        others = [request for request in proxy.requests() if request not in inserts]
    # 18.16 knows the setting (it ignores it on a table that is not replicated).
    assert inserts[0].params["insert_quorum"] == "2"
    assert inserts[0].params["insert_quorum_timeout"] == "6000"  # 3/4 of timeout_secs: the server answers first
    assert others and all("insert_quorum" not in request.params for request in others)
    assert [row["order"] for row in select_blocks(http_backend)] == [1]


def test_each_thread_gets_its_own_failover_backend(clickhouse_server_config, refusing_port):
    config = {key: value for key, value in clickhouse_server_config.items() if key != "url"}
    config["urls"] = f"{refusing_port()}, {clickhouse_server_config['url']}"

    backend = get_backend(config)

    assert isinstance(backend, FailoverBackend)
    assert get_backend(config) is backend
    seen = []
    thread = threading.Thread(target=lambda: seen.append(get_backend(config)))
    thread.start()
    thread.join()
    assert seen[0] is not backend and isinstance(seen[0], FailoverBackend)


# -- the drain through replicas -----------------------------------------------------------


def drain_through(settings, *urls):
    config = {key: value for key, value in settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG.items() if key != "url"}
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(config, urls=list(urls))
    reset_backends()
    return drain()


@pytest.mark.django_db
def test_the_drain_spends_no_attempt_on_a_dead_replica(server_clickhouse, settings, refusing_port):
    snapshots = [CourseSnapshotFactory(course__blocks=6) for _ in range(3)]

    result = drain_through(settings, refusing_port(), settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG["url"])

    assert result.ok and result.batches_sent == 3, result
    assert set(Batch.objects.values_list("status", "attempts")) == {(Batch.Status.SENT, 1)}
    assert result.rows_sent == sum(snapshot.row_count for snapshot in snapshots)
    assert count_rows(server_clickhouse) == result.rows_sent


@pytest.mark.django_db
def test_the_drain_with_every_replica_dead_spends_one_attempt_naming_each(
    server_clickhouse, settings, clickhouse_server_config, refusing_port
):
    CourseSnapshotFactory(course__blocks=6)
    first, second = refusing_port(), refusing_port()

    result = drain_through(settings, first, second)

    assert (result.batches_sent, result.batches_retrying) == (0, 1), result
    (batch,) = Batch.objects.all()  # a failure of the server: no other batch is claimed
    assert (batch.status, batch.attempts, batch.server_error) == (Batch.Status.RETRY, 1, True)
    assert address(first) in batch.last_error and address(second) in batch.last_error
    assert clickhouse_server_config["password"] not in batch.last_error
    assert OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING).count() == 2
    assert count_rows(server_clickhouse) == 0


def count_rows(backend):
    return sum(
        int(backend.query(f"SELECT count() AS n FROM {qualified_name(backend.database, name)}")[0]["n"])
        for name in ("course_overviews", "course_blocks", "course_relationships")
    )
