"""
What ClickHouse holds for a chunk of snapshots, read with one aggregate query per table
(and replica): per dump_id, the rows there and how many of them are distinct (by the
table's `row_key`); a row stored twice counts once in the second number.

A query lists the chunk's dump_ids and subjects, so its size grows with the chunk and the
keys: one that would pass MAX_STATEMENT_BYTES (ClickHouse refuses a query longer than its
max_query_size) is split into several, each over a part of the snapshots. Every dump_id (and
subject) is in exactly one part and the results are grouped by it, so the parts' results
put together are the one query's.
"""

from clickhouse_outbox.clickhouse.backends.base import (
    MAX_STATEMENT_BYTES,
    by_bytes,
    qualified_name,
    quote_identifier,
    quote_string,
    sql_literal,
    utf8_length,
)
from clickhouse_outbox.clickhouse.errors import ClickHouseError

#: ClickHouse's UNKNOWN_TABLE and UNKNOWN_DATABASE: the table is not there (a replica that lost it).
MISSING_TABLE_CODES = frozenset({60, 81})


class TableMissing(Exception):
    """The table does not exist where it was looked for (its rows count as none)."""


def held_rows(backend, table, dump_ids, subject_column=None, subjects=(), max_bytes=MAX_STATEMENT_BYTES, row_key=None):
    """
    {dump_id: (rows, distinct rows)} that `backend` holds in `table` for `dump_ids`; a
    dump_id it holds nothing of is left out. Filtering on the subjects as well
    (`subject_column`, e.g. course_key; `subjects[i]` the subject of `dump_ids[i]`) lets
    ClickHouse use the table's sort key.
    """
    if not dump_ids:
        return {}
    filtered = bool(subject_column and subjects)
    if filtered and len(subjects) != len(dump_ids):
        raise ValueError("held_rows needs the subject of each dump_id")
    row_key = row_key or table.row_key  # a chunk's rows (many subjects, one dump_id) are told apart by their key
    distinct = f"uniqExact({', '.join(map(quote_identifier, row_key))})" if row_key else "1"
    start = (f"SELECT toString(dump_id) AS dump_id, count() AS n, {distinct} AS k "
             f"FROM {qualified_name(backend.database, table.name)} WHERE ")
    end = " GROUP BY dump_id"
    # (dump_id literal, subject literal) per snapshot: a part of the query keeps each pair together.
    literals = [quote_string(dump_id) for dump_id in dump_ids]
    pairs = list(zip(literals, subject_literals(table, subject_column, subjects) if filtered else [""] * len(literals),
                     strict=True))
    frame = utf8_length(start) + utf8_length(end) + len("dump_id IN () AND ")
    if filtered:
        frame += utf8_length(f"{quote_identifier(subject_column)} IN ()")
    held = {}
    for part in by_bytes(pairs, max_bytes - frame, size=lambda pair: utf8_length(pair[0]) + utf8_length(pair[1]) + 2):
        where = f"dump_id IN ({', '.join(dump_id for dump_id, _ in part)})"
        if filtered:
            where = f"{quote_identifier(subject_column)} IN ({', '.join(subject for _, subject in part)}) AND {where}"
        for row in query(backend, table, f"{start}{where}{end}"):
            held[row["dump_id"]] = (int(row["n"]), int(row["k"]))
    return held


def rows_by_subject(backend, table, subject_column, subjects, max_bytes=MAX_STATEMENT_BYTES):
    """{subject: rows} `backend` holds in `table` for `subjects`, whatever their dump_id (rows from before the outbox)."""
    if not subjects:
        return {}
    column = quote_identifier(subject_column)
    start = f"SELECT toString({column}) AS s, count() AS n FROM {qualified_name(backend.database, table.name)} WHERE "
    end = " GROUP BY s"
    room = max_bytes - utf8_length(start) - utf8_length(end) - utf8_length(f"{column} IN ()")
    held = {}
    try:
        for part in by_bytes(subject_literals(table, subject_column, subjects), room):
            for row in query(backend, table, f"{start}{column} IN ({', '.join(part)}){end}"):
                held[row["s"]] = int(row["n"])
    except TableMissing:
        return {}
    return held


def subject_literals(table, column, subjects):
    """`subjects` as SQL literals of `column`: numbers where it holds numbers (a user id), else strings."""
    numeric = column_type(table, column).startswith(("Int", "UInt"))
    return [sql_literal(int(subject) if numeric else str(subject)) for subject in subjects]


def query(backend, table, sql):
    """The rows of `sql` on `table`; TableMissing where the table (or its database) is not there."""
    try:
        return backend.query(sql)
    except ClickHouseError as exc:
        if getattr(exc, "code", None) in MISSING_TABLE_CODES:
            raise TableMissing(f"{qualified_name(backend.database, table.name)} does not exist") from exc
        raise


def column_type(table, name):
    for column in table.columns:
        if column.name == name:
            return column.type
    raise KeyError(f"{table.name} has no column {name}")
