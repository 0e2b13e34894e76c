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

Every request has a total deadline, whatever the server or a proxy does (see transport.py
and docs/decisions/0013-bounded-requests.rst): `connect_timeout_secs` to connect, then
`timeout_secs` for all the rest (sending, ClickHouse's work, reading the whole answer). One
call of this backend is one request: an INSERT with the version query it may need first, or
a delete however many statements it takes, shares one deadline. Answers are read up to a
cap: `max_answer_bytes` for a query's rows, `max_error_bytes` for anything else (only the
start of an error is kept).
"""

import gzip
import json
import logging
import time
from base64 import b64encode
from contextlib import contextmanager
from urllib.parse import quote, urlencode, urlsplit

from clickhouse_outbox.clickhouse.backends import transport
from clickhouse_outbox.clickhouse.backends.base import (
    GZIP,
    Backend,
    InsertResult,
    ServerInfo,
    check_written_rows,
    delete_statements,
    insert_statement,
    parse_version,
)
from clickhouse_outbox.clickhouse.errors import (
    ClickHouseRejected,
    ClickHouseUnavailable,
    OutOfTime,
    classify,
    code_from_text,
    withhold_row_text,
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

#: Characters of an error answer kept in a message.
MAX_ERROR_CHARS = 2000
#: Bytes of an error answer (or of the answer to anything but a query) read: only the start
#: is kept, and ClickHouse puts the code and message there. The rest is not read at all.
MAX_ERROR_BYTES = 64 * 1024
#: Bytes of a query's answer read. The plugin's queries are aggregates of a chunk of subjects,
#: system tables or one course's blocks: megabytes at most. A longer answer is an error.
MAX_ANSWER_BYTES = 64 * 1024 * 1024

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

USER_AGENT = "clickhouse_outbox"


class HttpBackend(Backend):
    """One ClickHouse server and database, over one kept-alive connection (not thread-safe)."""

    max_answer_bytes = MAX_ANSWER_BYTES
    max_error_bytes = MAX_ERROR_BYTES

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
        tls = parts.scheme.lower() == "https"
        self.url = url.rstrip("/") + "/"
        self.host = parts.hostname
        self.port = parts.port or (443 if tls else 80)
        self.path = quote((parts.path or "/").rstrip("/") + "/", safe="/%")
        self.username = username or "default"
        self.database = database
        self.timeout_secs = float(timeout_secs)
        self.connect_timeout_secs = float(connect_timeout_secs)
        self.compresslevel = compresslevel
        # Settings every INSERT carries (e.g. insert_quorum), from the configuration.
        self.insert_settings = dict(insert_settings or {})
        #: URL parameters every request carries besides its own (e.g. an HTTP session_id).
        self.params = {}
        self._password = password or ""
        self._server_info = None
        self._deadline = None  # the Deadline of the request under way
        self._connection = transport.Connection(self.host, self.port, tls=tls)
        # Basic authentication of the UTF-8 bytes: every password works, whatever characters it holds
        # (a line break included, which no header could carry as it is); it is in no URL and no log.
        credentials = _utf8(self.username, "user name") + b":" + _utf8(self._password, "password")
        self._headers = {"User-Agent": USER_AGENT, "Authorization": b"Basic " + b64encode(credentials)}

    def __repr__(self):
        return f"<HttpBackend {self.host}:{self.port} database={self.database!r} user={self.username!r}>"

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def server_info(self):
        if self._server_info is None:
            rows = self._query("SELECT version() AS version", "the version query")
            self._server_info = ServerInfo(version=parse_version(rows[0]["version"]))
        return self._server_info

    def insert(self, table, payload, *, rows, dedup_token=None, encoding=""):
        what = f"the INSERT of {rows} rows into {table.name}"
        with self._request(what):
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
            answer = self._post(params, body, what=what, headers=headers,
                                personal_data_of=table.name if table.personal_data else None)
        if answer.body.strip():
            raise not_clickhouse(answer, what, "ClickHouse answers an INSERT with no content")
        written = None
        if info.reports_summary:
            written = written_rows_from_summary(answer.headers.get("X-ClickHouse-Summary"))
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
        what = f"the delete of {values} subjects' rows from {table.name}"
        with self._request(what):
            for sql in delete_statements(self.database, table, wanted):
                self._post({"wait_end_of_query": "1"}, sql.encode("utf-8"), what=what)

    def query(self, sql):
        return self._query(sql, "the query")

    def _query(self, sql, what):
        params = {"default_format": "JSONEachRow", "wait_end_of_query": "1"}
        with self._request(what):
            answer = self._post(params, sql.encode("utf-8"), what=what, cap=self.max_answer_bytes, changes=False)
        if not answer.complete:
            raise ClickHouseRejected(
                f"The answer of ClickHouse at {self.address} to {what} passed {self.max_answer_bytes:,} bytes; "
                "the rest was not read (no query of this plugin needs that much: is the url ClickHouse's?)",
                http_status=answer.status, retryable=True,
            )
        try:
            return [json.loads(line) for line in answer.body.splitlines() if line.strip()]
        except ValueError:
            raise not_clickhouse(answer, what, "ClickHouse answers a query with JSONEachRow rows") from None

    def command(self, sql):
        with self._request("the statement"):
            self._post({"wait_end_of_query": "1"}, sql.encode("utf-8"), what="the statement")

    def close(self):
        self._connection.close()

    @contextmanager
    def _request(self, what):
        """
        One request, with one deadline: the calls it makes (the version query an INSERT needs,
        each statement of a delete) share it. Not started once a run's time is up (`stop_at`).
        """
        if self._deadline is not None:
            yield self._deadline
            return
        if self.out_of_time():
            raise OutOfTime(f"{what} was not sent to ClickHouse at {self.address}: the drain's time was up")
        self._deadline = transport.Deadline(self.connect_timeout_secs, self.timeout_secs)
        try:
            yield self._deadline
        finally:
            self._deadline = None

    def _post(self, params, body, *, what, headers=None, cap=None, changes=True, personal_data_of=None):
        """
        The answer to a POST of `body`, within the request's deadline; a ClickHouseError
        unless it is a 200 (`changes`: the statement changes data, so a lost answer leaves
        its outcome unknown, and the error says so). For the rows of `personal_data_of` (a
        table of personal data) the error keeps none of the rows ClickHouse's text quotes.
        """
        unknown = "; it may or may not have been applied" if changes else ""
        target = f"{self.path}?{urlencode({**self.params, **params})}"
        cap = self.max_error_bytes if cap is None else cap
        try:
            answer = self._connection.post(target, {**self._headers, **(headers or {})}, body, self._deadline,
                                           answer_cap=cap, error_cap=self.max_error_bytes)
        except transport.ConnectFailed as exc:
            if exc.timed_out:
                raise ClickHouseUnavailable(
                    f"Could not connect to ClickHouse at {self.address} within connect_timeout_secs="
                    f"{self.connect_timeout_secs:g}s ({exc.reason})"
                ) from exc
            raise ClickHouseUnavailable(f"Could not reach ClickHouse at {self.address} for {what} ({exc.reason})") from exc
        except transport.ExchangeFailed as exc:
            if exc.timed_out:
                raise ClickHouseUnavailable(
                    f"ClickHouse at {self.address} did not answer {what} within timeout_secs={self.timeout_secs:g}s "
                    f"(time ran out {exc.phase}){unknown}"
                ) from exc
            raise ClickHouseUnavailable(
                f"The connection to ClickHouse at {self.address} broke {exc.phase} for {what} ({exc.reason}){unknown}"
            ) from exc
        except transport.NotHttp as exc:
            raise ClickHouseUnavailable(
                f"What answered {what} at {self.address} does not speak HTTP ({exc}); check that {SETTING_NAME}['url'] "
                "is ClickHouse's HTTP interface (port 8123, or 8443 with https)"
            ) from exc
        except transport.BadHeader as exc:
            raise ClickHouseRejected(f"Cannot send {what} to ClickHouse: {exc} (check {SETTING_NAME})") from None
        error = error_from_response(
            answer.status, answer.headers, answer.body, username=self.username, what=what, complete=answer.complete,
            personal_data_of=personal_data_of,
        )
        if error is not None:
            raise _redact(error, self._password)
        if _is_html(answer):
            raise _redact(not_clickhouse(answer, what, "ClickHouse never answers with HTML"), self._password)
        return answer


def not_clickhouse(answer, what, expected):
    """The error for a 200 that cannot have come from ClickHouse (a proxy's page, a web server's)."""
    return ClickHouseRejected(
        f"The answer to {what} is not ClickHouse's ({expected}; this one is "
        f"{answer.headers.get('Content-Type') or 'of no content type'} and starts "
        f"{_truncate(_text(answer.body).strip(), complete=answer.complete, limit=200)!r}); check that "
        f"{SETTING_NAME}['url'] is ClickHouse's HTTP interface and not a proxy's or web server's page",
        http_status=answer.status, retryable=True,
    )


def _is_html(answer):
    return "html" in (answer.headers.get("Content-Type") or "").lower()


def insert_block_size(rows):
    """max_insert_block_size for an INSERT of `rows` rows: one block for the whole batch (see MAX_INSERT_BLOCK_SIZE)."""
    return max(int(rows or 0), MAX_INSERT_BLOCK_SIZE)


def error_from_response(status, headers, body, *, username, what="the request", complete=True,
                        personal_data_of=None):
    """
    The ClickHouseError an HTTP answer stands for, or None when it is a success.

    The code comes from X-ClickHouse-Exception-Code (servers since 22.x) or else from the
    `Code: N` an older server writes in the body; a 200 with an exception code is an error.
    `complete` False: `body` is only the start of the answer (the rest was not read).
    For the rows of `personal_data_of` (a table of personal data), the message keeps only
    what ClickHouse's text says without the rows it quotes (`withhold_row_text`).
    """
    header_code = headers.get("X-ClickHouse-Exception-Code")
    if status == 200 and not header_code:
        return None
    text = _text(body).strip()
    code = int(header_code) if header_code and header_code.strip().isdigit() else code_from_text(text)
    text = withhold_row_text(text, personal_data_of) if personal_data_of else _truncate(text, complete=complete)
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


def _text(body):
    return body.decode("utf-8", errors="replace") if isinstance(body, bytes) else str(body or "")


def _truncate(text, *, complete=True, limit=MAX_ERROR_CHARS):
    """The start of an answer's text: `limit` characters, saying how much more there was (or that it was not read)."""
    if len(text) <= limit:
        return text if complete else f"{text}… [the rest was not read]"
    more = f"{len(text) - limit} more characters" if complete else "more, not read"
    return f"{text[:limit]}… [{more}]"


def _redact(error, password):
    """Belt and braces: no server message may carry the password into a log."""
    if password and password in error.message:
        error.message = error.message.replace(password, "********")
        error.args = (error.message,)
    return error
