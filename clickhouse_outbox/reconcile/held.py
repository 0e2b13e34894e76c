"""
What ClickHouse holds for a chunk of snapshots, read with one aggregate query per table
(and replica): per dump_id, the rows there and how many of them are distinct (by the
table's `row_key`); a row stored twice counts once in the second number.
"""

from clickhouse_outbox.clickhouse.backends.base import qualified_name, quote_identifier, quote_string, sql_literal
from clickhouse_outbox.clickhouse.errors import ClickHouseError

#: ClickHouse's UNKNOWN_TABLE and UNKNOWN_DATABASE: the table is not there (a replica that lost it).
MISSING_TABLE_CODES = frozenset({60, 81})


class TableMissing(Exception):
    """The table does not exist where it was looked for (its rows count as none)."""


def held_rows(backend, table, dump_ids, subject_column=None, subjects=()):
    """
    {dump_id: (rows, distinct rows)} that `backend` holds in `table` for `dump_ids`; a
    dump_id it holds nothing of is left out. Filtering on the subjects as well
    (`subject_column`, e.g. course_key) lets ClickHouse use the table's sort key.
    """
    if not dump_ids:
        return {}
    distinct = f"uniqExact({', '.join(map(quote_identifier, table.row_key))})" if table.row_key else "1"
    where = f"dump_id IN ({', '.join(quote_string(dump_id) for dump_id in dump_ids)})"
    if subject_column and subjects:
        where = f"{subjects_in(table, subject_column, subjects)} AND {where}"
    rows = query(backend, table, f"SELECT toString(dump_id) AS dump_id, count() AS n, {distinct} AS k "
                                 f"FROM {qualified_name(backend.database, table.name)} WHERE {where} GROUP BY dump_id")
    return {row["dump_id"]: (int(row["n"]), int(row["k"])) for row in rows}


def rows_by_subject(backend, table, subject_column, subjects):
    """{subject: rows} `backend` holds in `table` for `subjects`, whatever their dump_id (rows from before the outbox)."""
    if not subjects:
        return {}
    column = quote_identifier(subject_column)
    try:
        rows = query(backend, table, f"SELECT toString({column}) AS s, count() AS n "
                                     f"FROM {qualified_name(backend.database, table.name)} "
                                     f"WHERE {subjects_in(table, subject_column, subjects)} GROUP BY s")
    except TableMissing:
        return {}
    return {row["s"]: int(row["n"]) for row in rows}


def subjects_in(table, column, subjects):
    """`column IN (…)` of `subjects`, as numbers where the column holds numbers (a user id)."""
    numeric = column_type(table, column).startswith(("Int", "UInt"))
    values = ", ".join(sql_literal(int(subject) if numeric else str(subject)) for subject in subjects)
    return f"{quote_identifier(column)} IN ({values})"


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
