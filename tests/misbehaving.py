"""
A small threaded HTTP server on 127.0.0.1 that misbehaves on purpose, for what a real
ClickHouse (or proxy) does only on a bad day and never on demand: answers that trickle a
byte at a time, bodies of a GiB, connections closed mid-answer, pages that are not
ClickHouse's, silence, a peer that reads our body a kilobyte at a time.

    with MisbehavingServer(trickle_body(interval=0.2)) as server:
        backend = HttpBackend(server.url, ...)

A behaviour is a function `behaviour(peer)` called once per request, on the handler thread of
its connection; `peer` reads the request and writes the answer, and every wait in it ends
when the server is closed, so no test leaves a thread behind. The server records what it
received (`requests`) and how many bytes of answer it managed to write (`bytes_sent`): a
client that stops reading at its cap leaves the server unable to write more than the cap
plus what the sockets buffer.
"""

import json
import socket
import socketserver
import ssl
import threading
from typing import NamedTuple
from urllib.parse import parse_qsl, urlsplit

#: What one write of a huge body sends (the same bytes again and again: nothing is stored).
BLOCK = 64 * 1024
#: The receive buffer of a slow reader: small, so the client's send blocks after a few MB at most.
SMALL_RCVBUF = 4096


class Request(NamedTuple):
    method: str
    params: dict
    headers: dict  # lower-case names
    body: bytes


class Peer:
    """One connection, as a behaviour sees it."""

    def __init__(self, sock, server):
        self.sock = sock
        self.server = server
        self._buffer = b""

    @property
    def stopped(self):
        return self.server.stopped

    def wait(self, seconds):
        """Sleep `seconds`; True when the server was closed meanwhile (stop what you are doing)."""
        return self.server.stopped.wait(seconds)

    def read_head(self):
        """The request line and headers: (method, target, {name: value}), or None when the client went away."""
        while b"\r\n\r\n" not in self._buffer:
            chunk = self._recv(65536)
            if not chunk:
                return None
            self._buffer += chunk
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return method, target, headers

    def read_body(self, length):
        """`length` bytes of body (fewer if the client went away)."""
        while len(self._buffer) < length:
            chunk = self._recv(min(65536, length - len(self._buffer)))
            if not chunk:
                break
            self._buffer += chunk
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return body

    def read_request(self):
        """The whole request (recorded in server.requests), or None when the client went away."""
        head = self.read_head()
        if head is None:
            return None
        method, target, headers = head
        body = self.read_body(int(headers.get("content-length") or 0))
        request = Request(method, dict(parse_qsl(urlsplit(target).query, keep_blank_values=True)), headers, body)
        with self.server.lock:
            self.server.requests.append(request)
        return request

    def send(self, data):
        """Write `data`; False when the client is gone (it closed or reset the connection)."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        with self.server.lock:
            self.server.bytes_sent += len(data)
        return True

    def send_head(self, status=200, reason="OK", headers=None, length=None):
        lines = [f"HTTP/1.1 {status} {reason}"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if length is not None:
            lines.append(f"Content-Length: {length}")
        return self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def answer(self, status=200, body=b"", headers=None, reason="OK"):
        """A whole, well-formed answer."""
        return self.send_head(status, reason, headers, len(body)) and self.send(body)

    def _recv(self, size):
        try:
            return self.sock.recv(size)
        except OSError:
            return b""


class MisbehavingServer:
    """Serves `behaviour` on 127.0.0.1 (optionally over TLS, with `tls`: an SSLContext with a certificate)."""

    def __init__(self, behaviour, *, tls=None, rcvbuf=None):
        self.behaviour = behaviour
        self.tls = tls
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.requests = []
        self.bytes_sent = 0
        self.connections = 0
        self._sockets = set()
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                server._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

            def server_bind(self):
                if rcvbuf:  # accepted sockets inherit it: the client's send meets a full window sooner
                    self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
                super().server_bind()

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="misbehaving-server", daemon=True)
        self._thread.start()

    @property
    def url(self):
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    def close(self):
        self.stopped.set()
        self._server.shutdown()
        self._server.server_close()
        with self.lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _close(sock)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _serve(self, sock):
        with self.lock:
            self._sockets.add(sock)
            self.connections += 1
        try:
            if self.tls is not None:
                sock.settimeout(10)
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True)
                except (OSError, ssl.SSLError):
                    return
                sock.settimeout(None)
                with self.lock:
                    self._sockets.add(sock)
            peer = Peer(sock, self)
            while not self.stopped.is_set():
                if self.behaviour(peer) is not KEEP_ALIVE:
                    break
        finally:
            _close(sock)
            with self.lock:
                self._sockets.discard(sock)


#: What a behaviour returns to serve the next request on the same connection.
KEEP_ALIVE = object()


def _close(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


# -- behaviours --------------------------------------------------------------------------


def trickle_headers(interval=0.2):
    """A status line, then one byte of a header every `interval` seconds, for ever."""

    def behaviour(peer):
        if peer.read_request() is None:
            return
        if not peer.send(b"HTTP/1.1 200 OK\r\nX-Slow: "):
            return
        while not peer.wait(interval):
            if not peer.send(b"a"):
                return

    return behaviour


def trickle_body(interval=0.2, status=200):
    """Headers announcing a 1 MB body, then one byte of it every `interval` seconds."""

    def behaviour(peer):
        if peer.read_request() is None:
            return
        if not peer.send_head(status, headers={"Content-Type": "text/plain"}, length=1_000_000):
            return
        while not peer.wait(interval):
            if not peer.send(b"{"):
                return

    return behaviour


def huge_body(status=200, size=1 << 30, reason="OK", content_type="text/plain; charset=UTF-8", prefix=b""):
    """An answer of `size` bytes (a GiB by default), generated as it is sent: `prefix`, then "x" again and again."""
    block = b"x" * BLOCK

    def behaviour(peer):
        if peer.read_request() is None:
            return
        if not peer.send_head(status, reason, {"Content-Type": content_type}, length=size):
            return
        left = size
        if prefix:
            if not peer.send(prefix):
                return
            left -= len(prefix)
        while left > 0 and not peer.stopped.is_set():
            part = block if left >= BLOCK else block[:left]
            if not peer.send(part):
                return
            left -= len(part)

    return behaviour


def close_mid_body(status=200, announced=100_000, sent=b'{"version":"18.'):
    """Headers announcing `announced` bytes of body, `sent` of them, then the connection closed."""

    def behaviour(peer):
        if peer.read_request() is None:
            return
        peer.send_head(status, headers={"Content-Type": "text/plain"}, length=announced)
        peer.send(sent)

    return behaviour


def answer(status=200, body=b"", headers=None, reason="OK", keep_alive=False):
    """A well-formed answer, the same to every request (with `keep_alive`, on the same connection too)."""

    def behaviour(peer):
        if peer.read_request() is None:
            return None
        peer.answer(status, body, headers, reason)
        return KEEP_ALIVE if keep_alive else None

    return behaviour


def silent():
    """Read the request, then say nothing and keep the connection open until the server is closed."""

    def behaviour(peer):
        if peer.read_request() is None:
            return
        peer.stopped.wait()

    return behaviour


def slow_reader(interval=0.05, size=1024):
    """Read the request head, then its body `size` bytes every `interval` seconds; never answer."""

    def behaviour(peer):
        head = peer.read_head()
        if head is None:
            return
        while not peer.wait(interval):
            if not peer._recv(size):
                return

    return behaviour


def not_http(data=b"SSH-2.0-OpenSSH_9.2\r\n"):
    """Something that is not an HTTP server at all: a line of another protocol, then the connection closed."""

    def behaviour(peer):
        if peer.read_request() is None:
            return
        peer.send(data)

    return behaviour


def like_clickhouse(version="24.8.4.13", summary=None, keep_alive=True):
    """
    Answers as a current ClickHouse does: its version to `SELECT version()`, an empty 200
    (with X-ClickHouse-Summary `summary`, a dict, when given) to anything else.
    """

    def behaviour(peer):
        request = peer.read_request()
        if request is None:
            return None
        if b"version()" in request.body:
            peer.answer(200, json.dumps({"version": version}).encode() + b"\n",
                        {"Content-Type": "application/json; charset=UTF-8"})
        else:
            headers = {"X-ClickHouse-Summary": json.dumps(summary)} if summary is not None else {}
            peer.answer(200, b"", headers)
        return KEEP_ALIVE if keep_alive else None

    return behaviour
