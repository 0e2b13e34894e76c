"""
What every ClickHouse backend offers the rest of the plugin, and the SQL they share.

Statements that list values (`col IN (…)`) are sized by bytes, not by the number of values:
ClickHouse parses at most `max_query_size` bytes of a query (262,144 by default) and answers
a longer one with a syntax error, so a long list becomes several statements
(`MAX_STATEMENT_BYTES` each at most) whose results add up to the one statement's.
"""

import re
import time
from contextlib import contextmanager
from dataclasses import dataclass

from clickhouse_outbox.clickhouse.errors import WriteMismatch

#: The one content encoding a payload may come in besides raw lines (several members allowed).
GZIP = "gzip"

#: The longest statement with a list of values built here, in bytes of UTF-8: well under
#: ClickHouse's default max_query_size (262,144), with room for the rest of the statement.
MAX_STATEMENT_BYTES = 200_000


@dataclass(frozen=True)
class ServerInfo:
    """
    What a server can do, detected once per backend (never assumed).

    The thresholds are the releases that introduced each feature (ClickHouse changelog).
    """

    version: tuple  # e.g. (24, 8, 1, 2)

    @property
    def supports_deduplication_token(self):
        # `insert_deduplication_token` setting: 22.2.
        return self.version >= (22, 2)

    @property
    def supports_bool(self):
        # The `Bool` data type: 21.12 (ClickHouse PR #31072).
        return self.version >= (21, 12)

    @property
    def supports_low_cardinality(self):
        # LowCardinality without allow_experimental_low_cardinality_type: 19.x (18.16 refuses it, code 44).
        return self.version >= (19, 9)

    @property
    def reports_summary(self):
        # X-ClickHouse-Summary exists since 19.x, but before 22.5 (PR #36884) it is all zeros
        # unless progress headers are on: trusting it would turn every insert into a mismatch.
        return self.version >= (22, 5)

    @property
    def supports_async_insert_setting(self):
        return self.version >= (21, 11)

    @property
    def supports_non_replicated_deduplication_window(self):
        # MergeTree setting `non_replicated_deduplication_window`: 21.5 (PR #22514).
        return self.version >= (21, 5)

    @property
    def version_string(self):
        return ".".join(str(part) for part in self.version)


def parse_version(text):
    """`version()` as a tuple of ints: '18.16.1' -> (18, 16, 1); '24.8.4.13-lts' -> (24, 8, 4, 13)."""
    parts = re.findall(r"\d+", (text or "").split("-")[0])
    if not parts:
        raise ValueError(f"Unrecognised ClickHouse version {text!r}")
    return tuple(int(part) for part in parts)


@dataclass(frozen=True)
class InsertResult:
    """What the server says an INSERT wrote; `written_rows` is None when it does not say."""

    written_rows: int | None


class Backend:
    """
    A connection to one ClickHouse database.

    `insert` takes rows already encoded as JSONEachRow lines (UTF-8, one object per line),
    raw or (`encoding="gzip"`) gzip-compressed, and sends them in one INSERT with an
    explicit column list. It raises `clickhouse_outbox.clickhouse.errors.ClickHouseError`
    on any failure.

    `query` and `command` run in the server's default database (the backend's database may
    not exist yet, e.g. before `clickhouse_outbox_schema --create`): qualify table names.
    """

    database: str
    #: time.monotonic() after which no request is started (a drain's deadline); None: no limit.
    stop_at = None

    @contextmanager
    def starting_until(self, when):
        """
        Within the block no request starts after `when` (a time.monotonic() value, or None):
        one that would raises OutOfTime; one started before runs to its own deadline. So a
        run ends at most one request deadline after `when`.
        """
        previous = self.stop_at
        self.stop_at = when if previous is None or when is None else min(previous, when)
        try:
            yield self
        finally:
            self.stop_at = previous

    def out_of_time(self):
        """True when a request must not start now (see starting_until)."""
        return self.stop_at is not None and time.monotonic() >= self.stop_at

    def server_info(self) -> ServerInfo:
        raise NotImplementedError

    def insert(
        self, table, payload: bytes, *, rows: int, dedup_token: str | None = None, encoding: str = ""
    ) -> InsertResult:
        raise NotImplementedError

    def delete(self, table, wanted: dict) -> None:
        """
        Delete the rows of `table` whose column holds one of the values ({column: [values]}):
        a mutation (several when the values make a statement too long: see
        delete_statements), which ClickHouse applies to the rows it holds when it is
        created, not to rows inserted after. Deleting again is harmless.
        """
        raise NotImplementedError

    def query(self, sql: str) -> list:
        """Run a SELECT and return its rows as dicts."""
        raise NotImplementedError

    def command(self, sql: str) -> None:
        """Run a statement that returns nothing (DDL)."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def quote_identifier(name):
    """A database, table or column name as a backquoted identifier (`order` is a column name)."""
    return "`" + str(name).replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_string(value):
    """A string literal for ClickHouse SQL."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def qualified_name(database, table_name):
    return f"{quote_identifier(database)}.{quote_identifier(table_name)}"


def insert_statement(database, table, settings=None):
    """
    The INSERT for a batch of `table`'s rows, with an explicit column list.

    The column list makes the JSON keys land in the right columns whatever the table's column
    order; `settings` (a dict) becomes a SETTINGS clause when not empty.
    """
    columns = ", ".join(quote_identifier(name) for name in table.column_names)
    sql = f"INSERT INTO {qualified_name(database, table.name)} ({columns})"
    if settings:
        sql += " SETTINGS " + ", ".join(f"{name} = {_setting_value(value)}" for name, value in settings.items())
    return sql + " FORMAT JSONEachRow"


def delete_statements(database, table, wanted, settings=None, max_bytes=MAX_STATEMENT_BYTES):
    """
    `ALTER TABLE db.t DELETE WHERE col IN (...) [SETTINGS ...]` for {column: [values]}
    (numbers or strings): one statement per column, and more when its values would make
    one longer than `max_bytes`. Together they delete what one statement with every value
    would (a row goes if any list names it).
    """
    if not wanted or not all(wanted.values()):
        raise ValueError("a delete needs at least one value")
    start = f"ALTER TABLE {qualified_name(database, table.name)} DELETE WHERE "
    end = ""
    if settings:
        end = " SETTINGS " + ", ".join(f"{name} = {_setting_value(value)}" for name, value in settings.items())
    statements = []
    for column, values in wanted.items():
        prefix = f"{start}{quote_identifier(column)} IN ("
        room = max_bytes - utf8_length(prefix) - utf8_length(end) - 1
        for literals in by_bytes([sql_literal(value) for value in values], room):
            statements.append(f"{prefix}{', '.join(literals)}){end}")
    return statements


def by_bytes(items, room, size=None):
    """
    `items` in order, in consecutive lists that each fit `room` bytes once joined by ", "
    (`size(item)`: an item's bytes, by default its UTF-8 length). An item larger than
    `room` alone makes a list of its own: the server then says what is wrong with it.
    """
    size = size or utf8_length
    chunk, used = [], 0
    for item in items:
        cost = size(item) + (2 if chunk else 0)
        if chunk and used + cost > room:
            yield chunk
            chunk, used, cost = [], 0, size(item)
        chunk.append(item)
        used += cost
    if chunk:
        yield chunk


def utf8_length(text):
    return len(text.encode("utf-8"))


def sql_literal(value):
    """A whole number as it is, anything else as a string literal."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return quote_string(value)


def _setting_value(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return quote_string(value)


def check_written_rows(written_rows, *, rows, dedup_token_sent):
    """
    The written row count to report for an INSERT of `rows` rows, or WriteMismatch.

    Fewer rows written than sent means ClickHouse dropped some: retry (nothing is lost while
    the rows wait in the outbox). Zero rows written for a batch sent with a deduplication
    token is ClickHouse recognising a batch it already has: success. More rows than sent is
    fine: the count includes rows that materialized views wrote from the batch.
    """
    if written_rows is None or written_rows >= rows:
        return written_rows
    if written_rows == 0 and dedup_token_sent:
        return written_rows
    raise WriteMismatch(
        f"ClickHouse reports writing {written_rows} of the {rows} rows sent; the batch will be sent again",
        retryable=True,
    )
