"""
A tiny TCP proxy on 127.0.0.1 in front of the real test server, for what a test cannot see
from the client side: the bytes on the wire (gzip? which settings?) and a slow answer.
"""

import socket
import socketserver
import threading
import time
from urllib.parse import parse_qs, urlsplit


class LoopbackProxy:
    """
    Forwards connections to `upstream` ("host:port"), recording what clients send.

    `response_delay` holds back the server's answer that many seconds (the request still
    reaches the server at once), as a slow network or an overloaded server would.
    """

    def __init__(self, upstream, response_delay=0.0):
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.response_delay = response_delay
        self.sent = []  # raw bytes per client connection
        self._lock = threading.Lock()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                proxy._relay(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    def requests(self):
        """The HTTP requests seen so far, as (method, query params, headers, body) tuples."""
        with self._lock:
            streams = list(self.sent)
        parsed = []
        for stream in streams:
            parsed.extend(_parse_requests(bytes(stream)))
        return parsed

    def _relay(self, client):
        upstream = socket.create_connection(self.upstream)
        record = bytearray()
        with self._lock:
            self.sent.append(record)
        done = threading.Event()

        def client_to_upstream():
            try:
                while chunk := client.recv(65536):
                    with self._lock:
                        record.extend(chunk)
                    upstream.sendall(chunk)
            except OSError:
                pass
            finally:
                done.set()

        reader = threading.Thread(target=client_to_upstream, daemon=True)
        reader.start()
        try:
            first = True
            while chunk := upstream.recv(65536):
                if first and self.response_delay:
                    time.sleep(self.response_delay)
                first = False
                client.sendall(chunk)
        except OSError:
            pass
        finally:
            done.wait(timeout=5)
            upstream.close()


def _parse_requests(stream):
    """Split a recorded HTTP/1.1 client stream into requests (Content-Length or chunked bodies)."""
    requests = []
    while stream:
        head, separator, rest = stream.partition(b"\r\n\r\n")
        if not separator:
            break
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            length = int(headers["content-length"])
            body, stream = rest[:length], rest[length:]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body, stream = _dechunk(rest)
        else:
            body, stream = b"", rest
        query = {key: values[0] for key, values in parse_qs(urlsplit(target).query, keep_blank_values=True).items()}
        requests.append((method, query, headers, body))
    return requests


def _dechunk(data):
    body = bytearray()
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            _, _, data = data.partition(b"\r\n")
            return bytes(body), data
        body.extend(data[:size])
        data = data[size + 2:]
