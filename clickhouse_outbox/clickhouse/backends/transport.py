"""
HTTP/1.1 over one kept-alive connection, where a request has a total deadline and an answer
is read up to a cap, whatever the server or a proxy in front of it does.

Why not requests (and urllib3 under it): its `timeout=(connect, read)` bounds each socket
operation, not the request. A peer that sends a byte every few seconds, or reads our body a
byte at a time, or never closes, resets the clock with every byte, and `response.content`
reads a body whole, however large. urllib3's `Timeout(total=...)` only shortens the read
timeout by the connect time: it is still per read. A watchdog thread that closes the socket
at the deadline would work, but needs a thread (or timer) per request and the socket, which
requests keeps in its pool and reuses, and it races with that reuse.

Here every blocking socket operation (connect, the TLS handshake, each send of a slice of the
request, each receive of the answer) gets what is left of the request's deadline as its
timeout (`DeadlineSocket`), so the waits together cannot pass the deadline: a trickle only
spends it. No thread, no timer, no signal; CPython's own send, receive and handshake loops
already count a timeout as one deadline per call. `http.client` parses the answer (status
line, headers, chunked or sized body: with its own limits on line length and header count),
and `Connection.post` reads at most `cap` bytes of the body, then drops the connection
rather than read the rest. See docs/decisions/0013-bounded-requests.rst.

Not bounded by the deadline: the DNS lookup (the resolver's own timeouts and attempts apply).
"""

import http.client
import os
import select
import socket
import ssl
import time
from dataclasses import dataclass

#: The largest slice of a request body handed to the socket at once: each slice gets what is
#: left of the deadline, so a peer that reads slowly is found out after at most one slice.
SEND_SLICE = 64 * 1024
#: How much of an answer is asked for at once while it is read up to its cap.
READ_SLICE = 64 * 1024


class DeadlineExceeded(TimeoutError):
    """The request's deadline passed (a TimeoutError, as a socket timeout is)."""


class ConnectFailed(Exception):
    """No connection could be opened (refused, unreachable, unknown host, TLS refused, or timed out)."""

    def __init__(self, reason, *, timed_out=False):
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out


class ExchangeFailed(Exception):
    """
    The connection was open but the exchange did not complete: `phase` says where it stopped
    ("while sending the request", "while waiting for the answer", "while reading the
    answer"), `timed_out` whether the deadline ran out (else the peer closed or reset it).
    """

    def __init__(self, reason, *, phase, timed_out=False):
        super().__init__(reason)
        self.reason = reason
        self.phase = phase
        self.timed_out = timed_out


class BadHeader(ValueError):
    """A header value HTTP cannot carry (a line break or NUL); the message never repeats it."""


class NotHttp(Exception):
    """What came back is not an HTTP/1.x answer (a status line or headers that do not parse, or too many)."""


class Deadline:
    """
    When one request must be done: `connect_secs` to open its connection, then
    `exchange_secs` for everything after (sending, the server's work, reading the answer).
    A request on a connection that is already open has `exchange_secs`. So no request takes
    longer than connect_secs + exchange_secs, whatever the peer does.
    """

    def __init__(self, connect_secs, exchange_secs):
        self.connect_secs = float(connect_secs)
        self.exchange_secs = float(exchange_secs)
        self.started = time.monotonic()
        self.end = self.started + self.connect_secs + self.exchange_secs
        self._exchanging = False

    def remaining(self):
        """Seconds left; DeadlineExceeded when none is."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("the request's deadline passed")
        return left

    def connect_timeout(self):
        """What the next connection attempt may take: connect_secs, or what is left if that is less."""
        return min(self.connect_secs, self.remaining())

    def exchanging(self):
        """The connection is open: the rest of the request has exchange_secs from now (a reconnection keeps the end)."""
        if not self._exchanging:
            self._exchanging = True
            self.end = min(self.end, time.monotonic() + self.exchange_secs)


class _DeadlineMixin:
    """Before each blocking operation, the socket's timeout becomes what is left of `deadline` (when set)."""

    deadline = None

    def _arm(self):
        if self.deadline is not None:
            self.settimeout(self.deadline.remaining())

    def recv(self, *args, **kwargs):
        self._arm()
        return super().recv(*args, **kwargs)

    def recv_into(self, *args, **kwargs):
        self._arm()
        return super().recv_into(*args, **kwargs)

    def send(self, *args, **kwargs):
        self._arm()
        return super().send(*args, **kwargs)

    def sendall(self, data, flags=0):
        with memoryview(data) as view, view.cast("B") as octets:
            for start in range(0, len(octets), SEND_SLICE):
                self._arm()
                super().sendall(octets[start:start + SEND_SLICE], flags)


class DeadlineSocket(_DeadlineMixin, socket.socket):
    """A TCP socket whose every send and receive is bounded by what is left of its request's deadline."""


class DeadlineSSLSocket(_DeadlineMixin, ssl.SSLSocket):
    """The same over TLS (the class `tls_context()` makes `wrap_socket` return)."""


def tls_context():
    """
    Certificate-checking TLS whose sockets keep the deadline. The trusted CAs are those
    requests used: REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE when set, else certifi's bundle,
    else the system's.
    """
    cafile = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or _certifi_bundle()
    context = ssl.create_default_context(cafile=cafile)
    context.sslsocket_class = DeadlineSSLSocket
    return context


def _certifi_bundle():
    try:
        import certifi  # noqa: PLC0415 (optional: requests installs it)
    except ImportError:
        return None
    return certifi.where()


def open_connection(host, port, deadline, tls=None):
    """
    A connected DeadlineSocket (DeadlineSSLSocket with `tls`, an SSLContext from tls_context())
    to host:port, the connection and TLS handshake within the deadline's connect time;
    ConnectFailed otherwise.
    """
    try:
        addresses = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    except OSError as exc:
        raise ConnectFailed(_reason(exc)) from exc
    sock, failure = None, None
    for family, kind, proto, _, address in addresses:
        candidate = DeadlineSocket(family, kind, proto)
        try:
            candidate.settimeout(deadline.connect_timeout())
            candidate.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            candidate.connect(address)
        except OSError as exc:  # DeadlineExceeded and socket timeouts included
            candidate.close()
            failure = exc
            if isinstance(exc, TimeoutError):
                break  # the connect time is spent: no other address would get any
            continue
        sock = candidate
        break
    if sock is None:
        raise ConnectFailed(_reason(failure), timed_out=isinstance(failure, TimeoutError)) from failure
    if tls is not None:
        try:
            sock.settimeout(deadline.connect_timeout())
            sock = tls.wrap_socket(sock, server_hostname=host)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            sock.close()
            raise ConnectFailed(f"TLS handshake failed: {_reason(exc)}", timed_out=isinstance(exc, TimeoutError)) from exc
    deadline.exchanging()
    sock.deadline = deadline
    return sock


@dataclass
class Answer:
    """An HTTP answer: `body` is all of it when `complete`, else its first `cap` bytes (the rest was not read)."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes
    complete: bool


class Connection:
    """
    One kept-alive HTTP/1.1 connection to host:port (not thread-safe), opened when a request
    needs it and dropped after anything but a complete answer the server lets us keep.
    """

    def __init__(self, host, port, *, tls=False, host_header=None):
        self.host = host
        self.port = port
        self.tls = tls
        self.host_header = host_header or _host_header(host, port, tls)
        self._tls_context = None
        self._sock = None

    def post(self, target, headers, body, deadline, *, answer_cap, error_cap):
        """
        POST `body` to `target` (path and query string) with `headers` ({name: str or bytes});
        the whole exchange within `deadline`. Reads at most `answer_cap` bytes of a 200
        answer's body and `error_cap` of any other. Raises ConnectFailed, ExchangeFailed or NotHttp.
        """
        head = _request_head(target, self.host_header, headers, len(body))
        sock = self._ready(deadline)
        phase = "while sending the request"
        response = None
        try:
            if len(body) <= SEND_SLICE:
                sock.sendall(head + body)
            else:
                sock.sendall(head)
                sock.sendall(body)
            phase = "while waiting for the answer"
            response = http.client.HTTPResponse(sock, method="POST")
            response.begin()
            phase = "while reading the answer"
            cap = answer_cap if response.status == 200 else error_cap
            content, complete = read_capped(response, cap)
        except TimeoutError as exc:
            self._drop(response)
            raise ExchangeFailed("timed out", phase=phase, timed_out=True) from exc
        except http.client.IncompleteRead as exc:
            self._drop(response)
            raise ExchangeFailed("the connection closed before the end of the answer", phase=phase) from exc
        except http.client.RemoteDisconnected as exc:
            self._drop(response)
            raise ExchangeFailed("the server closed the connection without answering", phase=phase) from exc
        except http.client.HTTPException as exc:  # BadStatusLine, LineTooLong, too many headers...
            self._drop(response)
            raise NotHttp(f"{type(exc).__name__}: {str(exc)[:200]}") from exc
        except OSError as exc:
            self._drop(response)
            raise ExchangeFailed(_reason(exc), phase=phase) from exc
        if complete and not response.will_close:
            response.close()  # the body was read to its end: the connection is ready for the next request
            self._sock.deadline = None
        else:
            self._drop(response)
        return Answer(response.status, response.headers, content, complete)

    def close(self):
        self._drop(None)

    def _ready(self, deadline):
        """The open connection with the new deadline, or a new one when there is none or the server closed it."""
        if self._sock is not None and _dropped_by_peer(self._sock):
            self._drop(None)
        if self._sock is None:
            self._sock = open_connection(self.host, self.port, deadline, self._tls())
        else:
            deadline.exchanging()
            self._sock.deadline = deadline
        return self._sock

    def _tls(self):
        """The TLS context (made once, when first needed), or None for plain HTTP."""
        if self.tls and self._tls_context is None:
            try:
                self._tls_context = tls_context()
            except (OSError, ssl.SSLError) as exc:
                raise ConnectFailed(f"the trusted CA certificates could not be loaded: {_reason(exc)}") from exc
        return self._tls_context

    def _drop(self, response):
        """Close the connection (and an answer still being read): the peer stops sending, nothing more is read."""
        if response is not None:
            response.close()
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def read_capped(response, cap):
    """(body, complete): the answer's body, or its first `cap` bytes when it is longer (the rest is not read)."""
    body = bytearray()
    while True:
        part = response.read(min(READ_SLICE, cap + 1 - len(body)))
        if not part:
            if response.length:  # http.client returns what came when a sized body stops short
                raise http.client.IncompleteRead(b"", response.length)
            return bytes(body), True
        body += part
        if len(body) > cap:
            del body[cap:]
            return bytes(body), False


def _request_head(target, host_header, headers, length):
    lines = [f"POST {target} HTTP/1.1".encode("ascii"), b"Host: " + host_header.encode("ascii")]
    for name, value in {**headers, "Content-Length": str(length)}.items():
        value = value if isinstance(value, bytes) else str(value).encode("latin-1")
        if any(char in value for char in b"\r\n\0"):
            # Never repeat the value: it may be the password.
            raise BadHeader(f"the {name} header holds a line break or NUL character, which HTTP cannot carry")
        lines.append(name.encode("ascii") + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _host_header(host, port, tls):
    name = f"[{host}]" if ":" in host else host.encode("idna").decode("ascii")
    return name if port == (443 if tls else 80) else f"{name}:{port}"


def _dropped_by_peer(sock):
    """True when a kept-alive connection is readable before we asked anything: the server closed it (or sent junk)."""
    try:
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        poller = select.poll()  # not select.select: it fails on descriptors past 1024, which a busy worker has
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def _reason(exc):
    """A short reason for a socket error, without addresses: 'Connection refused', 'timed out'."""
    if exc is None:
        return "no address to connect to"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return getattr(exc, "verify_message", None) or exc.reason or type(exc).__name__
    return exc.strerror or str(exc) or type(exc).__name__
