"""
A ClickHouse (or a proxy in front of it) that misbehaves: every request ends within its
deadline (connect_timeout_secs + timeout_secs) with a clear ClickHouseError, whatever the
peer does, and an answer is read up to a cap, so memory stays bounded.

The peer is tests/misbehaving.py, a real HTTP server on loopback that trickles, floods,
closes, says nothing or reads slowly on purpose (a real ClickHouse does none of it on
demand). The bounds asserted are correctness bounds (the deadline plus a margin for a
loaded machine), not speed benchmarks.
"""

import base64
import os
import resource
import ssl
import time
import traceback

import pytest

from clickhouse_outbox.clickhouse.backends.base import ServerInfo
from clickhouse_outbox.clickhouse.backends.failover import FailoverBackend
from clickhouse_outbox.clickhouse.backends.http import MAX_ANSWER_BYTES, MAX_ERROR_BYTES, HttpBackend
from clickhouse_outbox.clickhouse.errors import ClickHouseRejected, ClickHouseUnavailable, OutOfTime
from clickhouse_outbox.clickhouse.tables import COURSE_BLOCKS
from tests.misbehaving import (
    MisbehavingServer,
    answer,
    close_mid_body,
    huge_body,
    like_clickhouse,
    not_http,
    silent,
    slow_reader,
    trickle_body,
    trickle_headers,
)

SECRET = "Pa55-wörd-€-Secret"  # not latin-1: sent as UTF-8, never repeated
CONNECT_SECS = 1.0
TIMEOUT_SECS = 1.0
DEADLINE = CONNECT_SECS + TIMEOUT_SECS
MARGIN = 1.0  # a loaded 2-core machine; the old client ran for ever in these cases
#: What the sockets of a loopback connection may hold beyond what the client read.
SOCKET_SLACK = 32 * 1024 * 1024
OLD_SERVER = ServerInfo(version=(18, 16, 1))


def backend_for(url, **overrides):
    options = {"username": "outbox", "password": SECRET, "database": "event_sink",
               "timeout_secs": TIMEOUT_SECS, "connect_timeout_secs": CONNECT_SECS, **overrides}
    return HttpBackend(url, **options)


def said(exc):
    """All an operator could see of an error."""
    return "\n".join([str(exc), repr(exc), "".join(traceback.format_exception(exc))])


def timed(call):
    """(the ClickHouseError `call` raised, seconds it took)."""
    started = time.monotonic()
    with pytest.raises(Exception) as caught:  # noqa: PT011 (the tests check the type)
        call()
    return caught.value, time.monotonic() - started


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.mark.parametrize(("behaviour", "phase"), [
    (trickle_headers(interval=0.1), "while waiting for the answer"),
    (trickle_body(interval=0.1), "while reading the answer"),
    (silent(), "while waiting for the answer"),
], ids=["trickled-headers", "trickled-body", "silence"])
def test_a_trickle_or_silence_ends_at_the_deadline(behaviour, phase):
    with MisbehavingServer(behaviour) as server:
        backend = backend_for(server.url)
        exc, elapsed = timed(lambda: backend.query("SELECT 1"))
        backend.close()

    assert isinstance(exc, ClickHouseUnavailable), said(exc)
    assert exc.retryable is True
    assert elapsed < DEADLINE + MARGIN
    assert f"did not answer the query within timeout_secs={TIMEOUT_SECS:g}s (time ran out {phase})" in str(exc)
    assert SECRET not in said(exc)


def test_a_peer_that_reads_our_body_slowly_ends_at_the_deadline():
    with MisbehavingServer(slow_reader(interval=0.05, size=1024), rcvbuf=4096) as server:
        backend = backend_for(server.url)
        body = "SELECT '" + "x" * (32 * 1024 * 1024) + "'"  # more than the sockets can buffer
        exc, elapsed = timed(lambda: backend.command(body))
        backend.close()

    assert isinstance(exc, ClickHouseUnavailable), said(exc)
    assert elapsed < DEADLINE + MARGIN
    assert "time ran out while sending the request" in str(exc)


def test_a_gigabyte_answer_to_a_query_is_read_up_to_its_cap():
    with MisbehavingServer(huge_body(size=1 << 30)) as server:
        backend = backend_for(server.url, timeout_secs=30)
        before = peak_rss_bytes()
        exc, elapsed = timed(lambda: backend.query("SELECT 1"))
        grown = peak_rss_bytes() - before
        backend.close()
        time.sleep(0.2)  # the server notices the closed connection
        sent = server.bytes_sent

    assert isinstance(exc, ClickHouseRejected), said(exc)
    assert exc.retryable is True
    assert f"passed {MAX_ANSWER_BYTES:,} bytes; the rest was not read" in str(exc)
    assert sent < MAX_ANSWER_BYTES + SOCKET_SLACK, sent
    assert grown < 3 * MAX_ANSWER_BYTES, grown
    assert elapsed < 30 + CONNECT_SECS


def test_a_gigabyte_error_answer_is_not_read_beyond_its_start():
    error = b"Code: 241, e.displayText() = DB::Exception: Memory limit (for query) exceeded: "
    with MisbehavingServer(huge_body(status=500, reason="Internal Server Error", prefix=error)) as server:
        backend = backend_for(server.url, timeout_secs=30)
        backend._server_info = OLD_SERVER
        before = peak_rss_bytes()
        exc, elapsed = timed(lambda: backend.insert(COURSE_BLOCKS, b'{"order": 1}\n', rows=1))
        grown = peak_rss_bytes() - before
        backend.close()
        time.sleep(0.2)
        sent = server.bytes_sent

    assert isinstance(exc, ClickHouseRejected), said(exc)
    assert (exc.code, exc.http_status, exc.retryable) == (241, 500, True)
    assert str(exc).startswith("ClickHouse refused the INSERT of 1 rows into course_blocks: Code: 241")
    assert "[more, not read]" in str(exc)
    assert len(str(exc)) < 2300
    assert sent < MAX_ERROR_BYTES + SOCKET_SLACK, sent
    assert grown < 64 * 1024 * 1024, grown
    assert elapsed < 30


def test_a_connection_closed_mid_answer_is_unavailable():
    with MisbehavingServer(close_mid_body()) as server:
        backend = backend_for(server.url)
        exc, elapsed = timed(lambda: backend.query("SELECT version() AS version"))

    assert isinstance(exc, ClickHouseUnavailable), said(exc)
    assert exc.retryable is True
    assert "broke while reading the answer for the query (the connection closed before the end of the answer)" in str(exc)
    assert elapsed < DEADLINE + MARGIN


PROXY_PAGE = b"<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1></body></html>"


@pytest.mark.parametrize(("behaviour", "words"), [
    (answer(200, PROXY_PAGE, {"Content-Type": "text/html"}), "ClickHouse never answers with HTML"),
    (answer(200, b"{\"version\": \"18.16.1\"\n<oops", {"Content-Type": "text/plain"}),
     "ClickHouse answers a query with JSONEachRow rows"),
], ids=["html-page", "invalid-json"])
def test_a_query_answered_with_what_is_not_clickhouse_is_an_error(behaviour, words):
    with MisbehavingServer(behaviour) as server:
        backend = backend_for(server.url)
        exc, _ = timed(lambda: backend.query("SELECT version() AS version"))

    assert isinstance(exc, ClickHouseRejected), said(exc)
    assert exc.retryable is True
    assert words in str(exc)
    assert "is ClickHouse's HTTP interface" in str(exc)


@pytest.mark.parametrize("behaviour", [
    answer(200, PROXY_PAGE, {"Content-Type": "text/html"}),
    answer(200, b"OK, stored somewhere", {"Content-Type": "text/plain"}),
], ids=["html-page", "garbage"])
def test_an_insert_answered_with_a_200_that_is_not_clickhouse_is_not_a_success(behaviour):
    """A login page or a web server answering 200 used to mark the batch sent: rows lost."""
    with MisbehavingServer(behaviour) as server:
        backend = backend_for(server.url)
        backend._server_info = OLD_SERVER
        exc, _ = timed(lambda: backend.insert(COURSE_BLOCKS, b'{"order": 1}\n', rows=1))

    assert isinstance(exc, ClickHouseRejected), said(exc)
    assert exc.retryable is True
    assert "is not ClickHouse's" in str(exc)


def test_something_that_is_not_http_is_unavailable():
    with MisbehavingServer(not_http()) as server:
        backend = backend_for(server.url)
        exc, _ = timed(lambda: backend.query("SELECT 1"))

    assert isinstance(exc, ClickHouseUnavailable), said(exc)
    assert "does not speak HTTP" in str(exc)


@pytest.fixture
def many_descriptors():
    """Over 1,024 files open, as in a busy worker: the connection's descriptor is past what select() handles."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        pytest.skip(f"only {soft} open files allowed")
    opened = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    yield
    for descriptor in opened:
        os.close(descriptor)


def test_a_kept_alive_connection_is_reused_and_one_the_server_closed_is_replaced(many_descriptors):
    """What requests' pool did, and the transport that replaced it must do too (a guard, not a defect)."""
    with MisbehavingServer(like_clickhouse(keep_alive=True)) as server:
        backend = backend_for(server.url)
        for _ in range(3):
            assert backend.query("SELECT version() AS version") == [{"version": "24.8.4.13"}]
        assert server.connections == 1
        assert backend._connection._sock.fileno() > 1024
    with MisbehavingServer(like_clickhouse(keep_alive=False)) as server:
        backend = backend_for(server.url)
        for _ in range(3):
            assert backend.query("SELECT version() AS version") == [{"version": "24.8.4.13"}]
            time.sleep(0.1)  # the server's close reaches us before the next request
        assert server.connections == 3


def test_credentials_travel_as_utf8_basic_authentication_only():
    with MisbehavingServer(like_clickhouse()) as server:
        backend = backend_for(server.url)
        backend.query("SELECT version() AS version")
        (request,) = server.requests

    scheme, encoded = request.headers["authorization"].split(" ", 1)
    assert scheme == "Basic" and base64.b64decode(encoded) == b"outbox:" + SECRET.encode("utf-8")
    assert "password" not in request.params and SECRET not in str(request.params)
    assert "x-clickhouse-key" not in request.headers


def test_a_password_no_header_could_carry_travels_all_the_same():
    with MisbehavingServer(like_clickhouse()) as server:
        backend_for(server.url, password="line\nbreak-Secret").query("SELECT version() AS version")
        (request,) = server.requests

    assert base64.b64decode(request.headers["authorization"].split(" ", 1)[1]) == b"outbox:line\nbreak-Secret"


def test_failover_tries_each_replica_within_its_deadline():
    with MisbehavingServer(trickle_body(interval=0.1)) as first, MisbehavingServer(silent()) as second:
        backend = FailoverBackend([backend_for(first.url), backend_for(second.url)])
        exc, elapsed = timed(lambda: backend.query("SELECT 1"))

    assert isinstance(exc, ClickHouseUnavailable), said(exc)
    assert "tried 2:" in str(exc)
    assert elapsed < 2 * DEADLINE + MARGIN


def test_no_replica_is_tried_once_the_runs_time_is_up():
    with MisbehavingServer(trickle_body(interval=0.1)) as first, MisbehavingServer(silent()) as second:
        backend = FailoverBackend([backend_for(first.url), backend_for(second.url)])
        with backend.starting_until(time.monotonic() + 0.2):
            exc, elapsed = timed(lambda: backend.query("SELECT 1"))
            assert second.requests == []
            late, _ = timed(lambda: backend.query("SELECT 1"))

    assert isinstance(exc, ClickHouseUnavailable), said(exc)
    assert "tried 1 (1 more not tried: the drain's time was up)" in str(exc)
    assert elapsed < DEADLINE + MARGIN
    assert isinstance(late, OutOfTime), said(late)
    assert backend.stop_at is None and all(replica.stop_at is None for replica in backend.replicas)


# -- TLS: the same bounds through the TLS layer ------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (certificate file, key file)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def tls(certificate, monkeypatch):
    """The server side's TLS context; the client trusts the certificate (REQUESTS_CA_BUNDLE, as with requests)."""
    cert_file, key_file = certificate
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_file))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


def test_tls_works_and_a_trickle_through_it_ends_at_the_deadline(tls):
    with MisbehavingServer(like_clickhouse(), tls=tls) as server:
        backend = backend_for(server.url)
        assert backend.query("SELECT version() AS version") == [{"version": "24.8.4.13"}]
    with MisbehavingServer(trickle_body(interval=0.1), tls=tls) as server:
        backend = backend_for(server.url)
        exc, elapsed = timed(lambda: backend.query("SELECT 1"))

    assert isinstance(exc, ClickHouseUnavailable), said(exc)
    assert "time ran out while reading the answer" in str(exc)
    assert elapsed < DEADLINE + MARGIN


def test_a_tls_handshake_that_never_comes_ends_at_the_connect_timeout(tls):
    with MisbehavingServer(silent()) as server:  # plain TCP that never says a word of TLS
        backend = backend_for(server.url.replace("http://", "https://"))
        exc, elapsed = timed(lambda: backend.query("SELECT 1"))

    assert isinstance(exc, ClickHouseUnavailable), said(exc)
    assert "within connect_timeout_secs=1s (TLS handshake failed: timed out)" in str(exc)
    assert elapsed < CONNECT_SECS + MARGIN


def test_a_certificate_that_is_not_trusted_is_refused(certificate, monkeypatch):
    """What requests did, and the transport that replaced it must do too (a guard, not a defect)."""
    cert_file, key_file = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with MisbehavingServer(like_clickhouse(), tls=context) as server:
        backend = backend_for(server.url)
        exc, _ = timed(lambda: backend.query("SELECT 1"))

    assert isinstance(exc, ClickHouseUnavailable), said(exc)
    assert "certificate" in str(exc)
