"""
The backend for a ClickHouse server, over its HTTP interface.

Credentials travel in HTTP basic authentication as UTF-8, never in the URL, so they cannot
end up in a log line or an exception message, and any password works: requests encodes a
header as latin-1 (failing on other characters, with an error that quotes one) and refuses
spaces and line breaks at its ends, while ClickHouse (18.16 and later) takes basic
authentication's bytes as they are.

Inserts are gzip-compressed and ask the server to answer only once the data is written
(`wait_end_of_query=1`), so the answer (and, on servers that send it, the row count in
X-ClickHouse-Summary) is final, and to parse the whole batch into one block
(`max_insert_block_size`), which a replicated table deduplicates when the batch is resent.
Settings are sent only to servers that know them: an unknown setting is an error.
"""

import gzip
import json
import logging
import time
from urllib.parse import urlsplit

import requests
from requests.auth import HTTPBasicAuth

from clickhouse_outbox.clickhouse.backends.base import (
    Backend,
    InsertResult,
    ServerInfo,
    check_written_rows,
    delete_statement,
    insert_statement,
    parse_version,
)
from clickhouse_outbox.clickhouse.backends.base import GZIP
from clickhouse_outbox.clickhouse.errors import (
    ClickHouseRejected,
    ClickHouseUnavailable,
    classify,
    code_from_text,
)

logger = logging.getLogger(__name__)

SETTING_NAME = "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG"

# Codes that mean the server did not accept who we are.
AUTH_ERROR_CODES = frozenset({
    192,  # UNKNOWN_USER
    193,  # WRONG_PASSWORD
    194,  # REQUIRED_PASSWORD
    516,  # AUTHENTICATION_FAILED
})
ACCESS_DENIED_CODES = frozenset({497})  # ACCESS_DENIED: the user lacks a grant

# HTTP statuses a proxy or load balancer in front of ClickHouse answers when it is down.
UNAVAILABLE_STATUSES = frozenset({502, 503, 504})

MAX_ERROR_CHARS = 2000

# 200,000 course_blocks rows (129 MB of JSON) in one INSERT to 18.16 on loopback: level 1 makes
# 5.3 MB in 0.3 s, level 3 4.7 MB for ~15% more time end to end, level 6 half the speed. Off a
# loopback the 24x smaller body wins outright. None sends the body uncompressed.
DEFAULT_COMPRESSLEVEL = 1

# ClickHouse's default max_insert_block_size. An INSERT is parsed into blocks of at most this many
# rows, and a replicated table deduplicates a resent INSERT block by block (a hash of each block's
# data). A batch therefore asks for a block size of at least its own row count: it is one block
# whatever the server's or the user profile's setting, so a resend through any replica is the
# same block and is dropped. The value depends only on the batch, so every attempt sends the same.
MAX_INSERT_BLOCK_SIZE = 1_048_576


class HttpBackend(Backend):
    """One ClickHouse server and database, with a pooled `requests.Session` (not thread-safe)."""

    def __init__(
        self,
        url,
        *,
        username="",
        password="",
        database="default",
        timeout_secs=5,
        connect_timeout_secs=3,
        compresslevel=DEFAULT_COMPRESSLEVEL,
        insert_settings=None,
    ):
        parts = urlsplit(url)
        self.url = url.rstrip("/") + "/"
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.username = username or "default"
        self.database = database
        self.timeout_secs = float(timeout_secs)
        self.connect_timeout_secs = float(connect_timeout_secs)
        self.compresslevel = compresslevel
        # Settings every INSERT carries (e.g. insert_quorum), from the configuration.
        self.insert_settings = dict(insert_settings or {})
        self._password = password or ""
        self._server_info = None
        self._session = requests.Session()
        # Set on the session, so no ~/.netrc entry replaces it; bytes, so requests sends them as they are.
        self._session.auth = HTTPBasicAuth(_utf8(self.username, "user name"), _utf8(self._password, "password"))

    def __repr__(self):
        return f"<HttpBackend {self.host}:{self.port} database={self.database!r} user={self.username!r}>"

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def server_info(self):
        if self._server_info is None:
            rows = self.query("SELECT version() AS version")
            self._server_info = ServerInfo(version=parse_version(rows[0]["version"]))
        return self._server_info

    def insert(self, table, payload, *, rows, dedup_token=None, encoding=""):
        info = self.server_info()
        params = {
            "query": insert_statement(self.database, table),
            "database": self.database,
            "wait_end_of_query": "1",
            **self.insert_settings,
        }
        if info.supports_async_insert_setting:
            params["async_insert"] = "0"
        params["max_insert_block_size"] = str(insert_block_size(rows))
        token_sent = bool(dedup_token) and info.supports_deduplication_token
        if token_sent:
            params["insert_deduplication_token"] = dedup_token
        headers = {}
        body = payload
        if encoding == GZIP:
            if self.compresslevel is None:  # the operator asked for uncompressed requests
                body = gzip.decompress(payload)
            else:
                headers["Content-Encoding"] = "gzip"
        elif self.compresslevel is not None:
            body = gzip.compress(payload, compresslevel=self.compresslevel, mtime=0)
            headers["Content-Encoding"] = "gzip"
        started = time.monotonic()
        response = self._post(params, body, what=f"the INSERT of {rows} rows into {table.name}", headers=headers)
        written = None
        if info.reports_summary:
            written = written_rows_from_summary(response.headers.get("X-ClickHouse-Summary"))
        written = check_written_rows(written, rows=rows, dedup_token_sent=token_sent)
        logger.debug(
            "Inserted %d rows into %s.%s (%d bytes sent, %s) in %.3fs; server reports %s written",
            rows, self.database, table.name, len(body), headers.get("Content-Encoding", "raw"),
            time.monotonic() - started, written,
        )
        return InsertResult(written_rows=written)

    def delete(self, table, wanted):
        # Not waited for (mutations_sync): the mutation is ordered when it is created, and a
        # large table's rewrite may take longer than timeout_secs. system.mutations shows it.
        values = sum(len(values) for values in wanted.values())
        self._post({"wait_end_of_query": "1"}, delete_statement(self.database, table, wanted).encode("utf-8"),
                   what=f"the delete of {values} subjects' rows from {table.name}")

    def query(self, sql):
        params = {"default_format": "JSONEachRow", "wait_end_of_query": "1"}
        response = self._post(params, sql.encode("utf-8"), what="the query")
        return [json.loads(line) for line in response.content.splitlines() if line.strip()]

    def command(self, sql):
        self._post({"wait_end_of_query": "1"}, sql.encode("utf-8"), what="the statement")

    def close(self):
        self._session.close()

    def _post(self, params, body, *, what, headers=None):
        timeout = (self.connect_timeout_secs, self.timeout_secs)
        try:
            response = self._session.post(self.url, params=params, data=body, headers=headers, timeout=timeout)
        except requests.exceptions.ConnectTimeout as exc:
            raise ClickHouseUnavailable(
                f"Could not connect to ClickHouse at {self.address} within connect_timeout_secs="
                f"{self.connect_timeout_secs:g}s ({_root_cause(exc)})"
            ) from exc
        except requests.exceptions.ReadTimeout as exc:
            raise ClickHouseUnavailable(
                f"ClickHouse at {self.address} did not answer {what} within timeout_secs={self.timeout_secs:g}s; "
                "it may or may not have been applied"
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            raise ClickHouseUnavailable(
                f"Could not reach ClickHouse at {self.address} for {what} ({_root_cause(exc)})"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise ClickHouseUnavailable(
                f"The HTTP exchange with ClickHouse at {self.address} failed for {what} ({_root_cause(exc)})"
            ) from exc
        error = error_from_response(
            response.status_code, response.headers, response.content, username=self.username, what=what
        )
        if error is not None:
            raise _redact(error, self._password)
        return response


def insert_block_size(rows):
    """max_insert_block_size for an INSERT of `rows` rows: one block for the whole batch (see MAX_INSERT_BLOCK_SIZE)."""
    return max(int(rows or 0), MAX_INSERT_BLOCK_SIZE)


def error_from_response(status, headers, body, *, username, what="the request"):
    """
    The ClickHouseError an HTTP answer stands for, or None when it is a success.

    The code comes from X-ClickHouse-Exception-Code (servers since 22.x) or else from the
    `Code: N` an older server writes in the body; a 200 with an exception code is an error.
    """
    header_code = headers.get("X-ClickHouse-Exception-Code")
    if status == 200 and not header_code:
        return None
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else str(body or "")
    text = _truncate(text.strip())
    code = int(header_code) if header_code and header_code.strip().isdigit() else code_from_text(text)
    if status == 401 or code in AUTH_ERROR_CODES:
        return ClickHouseRejected(
            f"ClickHouse rejected the credentials of user {username!r} (check {SETTING_NAME}): {text}",
            code=code, http_status=status, retryable=True,
        )
    if status == 403 or code in ACCESS_DENIED_CODES:
        return ClickHouseRejected(
            f"ClickHouse denied user {username!r} {what} (grant the privileges it needs): {text}",
            code=code, http_status=status, retryable=True,
        )
    if code is None and status in UNAVAILABLE_STATUSES:
        return ClickHouseUnavailable(
            f"ClickHouse is unavailable (HTTP {status} from the server or a proxy in front of it): {text}",
            http_status=status, retryable=True,
        )
    if code is None:
        return ClickHouseRejected(
            f"ClickHouse refused {what} with HTTP {status} and no ClickHouse error code ({text or 'empty body'}); "
            f"check that {SETTING_NAME}['url'] is ClickHouse's HTTP interface",
            http_status=status, retryable=True,
        )
    return ClickHouseRejected(
        f"ClickHouse refused {what}: {text}", code=code, http_status=status, retryable=classify(code)
    )


def written_rows_from_summary(header):
    """`written_rows` from an X-ClickHouse-Summary header (JSON, numbers as strings), or None."""
    if not header:
        return None
    try:
        return int(json.loads(header)["written_rows"])
    except (ValueError, KeyError, TypeError):
        logger.warning("Ignoring an X-ClickHouse-Summary header that is not what ClickHouse sends: %.200r", header)
        return None


def _utf8(text, what):
    """`text` as UTF-8; an error that shows none of it (config.parse reports such a value first)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"The ClickHouse {what} holds bytes that are not text (not UTF-8)") from None


def _truncate(text):
    if len(text) <= MAX_ERROR_CHARS:
        return text
    return f"{text[:MAX_ERROR_CHARS]}… [{len(text) - MAX_ERROR_CHARS} more characters]"


def _redact(error, password):
    """Belt and braces: no server message may carry the password into a log."""
    if password and password in error.message:
        error.message = error.message.replace(password, "********")
        error.args = (error.message,)
    return error


def _root_cause(exc):
    """The innermost reason of a requests exception (e.g. 'Connection refused'), without URLs."""
    seen = set()
    current = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        nested = getattr(current, "reason", None) or current.__cause__ or current.__context__
        if nested is None and current.args and isinstance(current.args[0], BaseException):
            nested = current.args[0]
        current = nested if isinstance(nested, BaseException) else None
    return type(exc).__name__

