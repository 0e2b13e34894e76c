"""
A small threaded TCP proxy on 127.0.0.1 in front of a real ClickHouse server, for what a
test cannot see or cause from the client's side: the requests as they went over the wire
(gzip? which settings?), a slow answer, a lost acknowledgement.

Modes (switchable while it runs; a request takes the mode current when it starts):

    pass_through()            forward both ways untouched (the default)
    delay_response(seconds)   forward the request at once, receive the server's answer, then
                              hold it `seconds` (a number, or a (low, high) range drawn per
                              answer) before the client gets it: the server has committed,
                              the client does not know yet
    drop(after_commit=True)   forward the request, receive the answer, and close the client's
                              connection instead of delivering it (a lost acknowledgement);
                              with after_commit=False the request never reaches the server
    hold_response()           forward the request at once, receive the server's answer, and
                              keep it from the client until release_held(): a send that
                              stalls for as long as the test wants (the client stays alive)

`match` limits faults to some requests: bytes that the request's first bytes must contain
(e.g. b"INSERT": ClickHouse's HTTP interface carries the query in the URL), or a function
of those bytes; other requests always pass.

The proxy understands just enough HTTP/1.1 for a client that does not pipeline (requests):
an exchange is one request and its answer; it starts with the client's first bytes and
ends when the server starts to answer. `exchanges` records each one, so a test can tell
what was in flight when it killed the client, and `requests()` parses what was sent.
"""

import random
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import parse_qsl, urlsplit

UPSTREAM_TIMEOUT = 60  # seconds a relay waits for the server before giving up on it


class Request(NamedTuple):
    """An HTTP request as the client sent it: the URL's query parameters, lower-cased header names, the raw body."""

    method: str
    params: dict
    headers: dict
    body: bytes


@dataclass
class Exchange:
    """One request/answer through the proxy."""

    matched: bool
    mode: str
    delay: float = 0.0
    request: bytearray = field(default_factory=bytearray)  # every byte the client sent
    answered: float | None = None  # the server's first answer bytes reached the proxy
    delivered: float | None = None  # the client got them
    dropped: bool = False

    def parsed(self):
        # One request per exchange and a Content-Length body (what requests sends for bytes):
        # the body is everything after the head.
        head, _, body = bytes(self.request).partition(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        params = dict(parse_qsl(urlsplit(target).query, keep_blank_values=True))
        return Request(method, params, headers, body)


class FaultProxy:
    """Relays connections to the server at `upstream` (a URL such as http://127.0.0.1:18123)."""

    def __init__(self, upstream, *, match=None):
        address = urlsplit(upstream)
        self.upstream = (address.hostname, address.port)
        self.match = match
        self.exchanges = []
        self._mode = ("pass", None)
        self._released = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._sockets = set()
        self._rng = random.Random()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                proxy._relay(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True).start()

    # -- modes ---------------------------------------------------------------------------

    def pass_through(self):
        self._mode = ("pass", None)

    def delay_response(self, seconds):
        self._mode = ("delay", seconds)

    def drop(self, after_commit=True):
        self._mode = ("drop_after_commit" if after_commit else "drop_before_send", None)

    def hold_response(self):
        self._released.clear()
        self._mode = ("hold", None)

    def release_held(self):
        """Deliver the answers held so far, and pass the next ones through."""
        self._mode = ("pass", None)
        self._released.set()

    # -- what happened -------------------------------------------------------------------

    @property
    def url(self):
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def matched_exchanges(self):
        with self._lock:
            return [exchange for exchange in self.exchanges if exchange.matched]

    def requests(self):
        """Every request so far, as a Request (method, params, headers, body)."""
        with self._lock:
            exchanges = list(self.exchanges)
        return [exchange.parsed() for exchange in exchanges]

    def close(self):
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _close(sock)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- relaying ------------------------------------------------------------------------

    def _matches(self, head):
        if self.match is None:
            return True
        if callable(self.match):
            return bool(self.match(head))
        return self.match in head

    def _delay_for(self, value):
        if isinstance(value, (tuple, list)):
            return self._rng.uniform(*value)
        return float(value or 0)

    def _relay(self, client):
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _close(client)
            return
        upstream.settimeout(UPSTREAM_TIMEOUT)
        with self._lock:
            self._sockets.update((client, upstream))
        current = {"exchange": None}
        closed = threading.Event()

        def client_to_upstream():
            try:
                while not closed.is_set():
                    chunk = client.recv(65536)
                    if not chunk:
                        # The client went away (or was killed): pass its FIN on, as a direct
                        # connection would; the server keeps what it already received.
                        try:
                            upstream.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        break
                    exchange = current["exchange"]
                    if exchange is None or exchange.answered is not None:
                        mode, argument = self._mode
                        matched = self._matches(chunk[:4096])
                        exchange = Exchange(
                            matched=matched, mode=mode if matched else "pass",
                            delay=self._delay_for(argument) if matched else 0.0,
                        )
                        with self._lock:
                            self.exchanges.append(exchange)
                        current["exchange"] = exchange
                    exchange.request.extend(chunk)
                    if exchange.mode == "drop_before_send":
                        exchange.dropped = True
                        closed.set()
                        _close(client)
                        _close(upstream)
                        return
                    upstream.sendall(chunk)
            except OSError:
                pass

        reader = threading.Thread(target=client_to_upstream, name="fault-proxy-request", daemon=True)
        reader.start()
        try:
            while not closed.is_set():
                chunk = upstream.recv(65536)
                if not chunk:
                    break
                exchange = current["exchange"]
                if exchange is not None and exchange.answered is None:
                    exchange.answered = time.monotonic()
                    if exchange.mode == "drop_after_commit":
                        exchange.dropped = True
                        break
                    if exchange.mode == "delay" and exchange.delay > 0:
                        if closed.wait(exchange.delay):
                            break
                    if exchange.mode == "hold":
                        while not self._released.wait(0.05):
                            if self._closing.is_set():
                                break
                client.sendall(chunk)
                if exchange is not None and exchange.delivered is None:
                    exchange.delivered = time.monotonic()
        except OSError:
            pass
        finally:
            closed.set()
            _close(client)
            _close(upstream)
            reader.join(timeout=5)
            with self._lock:
                self._sockets.discard(client)
                self._sockets.discard(upstream)


def _close(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
