"""
The backend for an embedded ClickHouse (chdb) store: the demo and tests, no server needed.

A chdb store directory can be open in one process at a time, and a process can have one
store open at a time. So a session is opened for an operation (or a `with
backend.session():` block) and always closed after, and the failure to open a store that
another process holds is a retryable ClickHouseUnavailable: the other process will let go.
chdb is an optional dependency (`pip install clickhouse_outbox[embedded]`), imported here
only when a chdb:// backend is configured.
"""

import fcntl
import gzip
import importlib
import json
import os
import threading
from contextlib import contextmanager

from django.core.exceptions import ImproperlyConfigured

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
    classify,
    code_from_text,
    withhold_row_text,
)

# chdb keeps one embedded server per process: sessions from several threads take turns.
_process_lock = threading.RLock()


def import_chdb_session():
    try:
        return importlib.import_module("chdb.session")
    except ImportError as exc:
        raise ImproperlyConfigured(
            "A chdb:// ClickHouse URL needs the embedded engine: pip install clickhouse_outbox[embedded]"
        ) from exc


class ChdbBackend(Backend):
    """A database in a chdb store directory."""

    def __init__(self, path, database="default"):
        if not os.path.isabs(path):
            raise ImproperlyConfigured(f"The chdb store path must be absolute, not {path!r}")
        self.path = path
        self.database = database
        self._chdb_session = import_chdb_session()
        self._session = None
        self._server_info = None

    def __repr__(self):
        return f"<ChdbBackend {self.path} database={self.database!r}>"

    @contextmanager
    def session(self):
        """Keep the store open for several statements; it is locked against other processes meanwhile."""
        with _process_lock:
            if self._session is not None:
                yield self
                return
            self._session = self._open()
            try:
                yield self
            finally:
                session, self._session = self._session, None
                session.close()

    def server_info(self):
        if self._server_info is None:
            rows = self.query("SELECT version() AS version")
            self._server_info = ServerInfo(version=parse_version(rows[0]["version"]))
        return self._server_info

    def insert(self, table, payload, *, rows, dedup_token=None, encoding=""):
        if encoding == GZIP:
            payload = gzip.decompress(payload)
        try:
            data = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ClickHouseRejected(f"The rows for {table.name} are not valid UTF-8 ({exc})", retryable=False) from exc
        with self.session():
            info = self.server_info()
            settings = {}
            if info.supports_async_insert_setting:
                settings["async_insert"] = 0
            token_sent = bool(dedup_token) and info.supports_deduplication_token
            if token_sent:
                settings["insert_deduplication_token"] = dedup_token
            sql = f"{insert_statement(self.database, table, settings)}\n{data}"
            result = self._run(sql, "CSV", what=f"the INSERT of {rows} rows into {table.name}",
                               personal_data_of=table.name if table.personal_data else None)
        written = _rows_written(result)
        return InsertResult(written_rows=check_written_rows(written, rows=rows, dedup_token_sent=token_sent))

    def delete(self, table, wanted):
        # Waited for: the store is closed after each operation, which would cut a mutation short.
        with self.session():
            for sql in delete_statements(self.database, table, wanted, {"mutations_sync": 1}):
                self._run(sql, "CSV", what=f"the delete from {table.name}")

    def query(self, sql):
        result = self._run(sql, "JSONEachRow", what="the query")
        return [json.loads(line) for line in result.bytes().splitlines() if line.strip()]

    def command(self, sql):
        self._run(sql, "CSV")

    def _run(self, sql, fmt, what="the statement", personal_data_of=None):
        """
        Run one statement. For the rows of `personal_data_of` (a table of personal data) the
        error keeps only what chdb's text says without the rows it quotes, and does not chain
        chdb's own exception (a logged traceback would print it).
        """
        with self.session():
            try:
                return self._session.query(sql, fmt)
            except RuntimeError as exc:  # chdb._exceptions.ChdbError and friends
                failure, text = exc, str(exc)
            code = code_from_text(text)
            retryable = classify(code) if code is not None else True
            if personal_data_of:
                text, failure = withhold_row_text(text, personal_data_of), None
            raise ClickHouseRejected(f"chdb refused {what}: {_truncate(text.strip())}", code=code,
                                     retryable=retryable) from failure

    def _open(self):
        try:
            return self._chdb_session.Session(self.path)
        except RuntimeError as exc:
            raise ClickHouseUnavailable(self._open_failure_message(str(exc))) from exc

    def _open_failure_message(self, text):
        if "already initialized with path" in text:
            return (
                f"Could not open the chdb store {self.path}: this process already has another chdb store open "
                f"(chdb allows one store per process): {text}"
            )
        holder = locked_by(self.path)
        if holder is not None:
            return (
                f"The chdb store {self.path} is in use by another process ({holder}); chdb allows one process "
                "per store directory, try again when it is done"
            )
        return f"Could not open the chdb store {self.path}: {text}"


def locked_by(path):
    """
    Who holds the lock on a chdb store, or None when nobody does.

    chdb reports a store locked by another process only on stderr ("Cannot lock file
    .../status"), raising a generic error; its `status` file is flock()ed and names the pid.
    """
    status = os.path.join(path, "status")
    try:
        with open(status, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                first_line = handle.read(200).decode("utf-8", errors="replace").splitlines()[:1]
                return first_line[0].strip() if first_line else "unknown pid"
            fcntl.flock(handle, fcntl.LOCK_UN)
    except FileNotFoundError:
        return None
    return None


def _truncate(text, limit=2000):
    return text if len(text) <= limit else f"{text[:limit]}… [{len(text) - limit} more characters]"


def _rows_written(result):
    rows_written = getattr(result, "rows_written", None)
    return rows_written() if callable(rows_written) else None
