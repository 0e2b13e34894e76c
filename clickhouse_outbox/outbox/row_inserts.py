"""
The outbox's own rows written as SQL compiled once per connection vendor, for the learner
changes that run inside the platform's transactions by the thousand (a bulk enroll): Django's
`Model.save()` costs more in Python than the INSERT itself, and its RETURNING cannot read the
database's clock.

A one-row change is two INSERTs and nothing else (decision record 0015):

    the snapshot     INSERT ... SELECT ... WHERE NOT EXISTS (the user's retirement)
                     RETURNING id, time_last_dumped (the database's clock, as the row's text)
    its entry        INSERT (the JSONEachRow line, raw: the bytes before its time, the time the
                     snapshot's INSERT stored, the bytes after) RETURNING id; on MySQL/MariaDB
                     an INSERT ... SELECT from the snapshot just inserted, found by its dump_id

sent in one round trip where the connection can (`one_trip`): on PostgreSQL one call of the
function migration 0013 creates, which holds both INSERTs (planned once per database session;
sent as text they are parsed and planned at each change, most of the server's time for them);
on MySQL and MariaDB through mysqlclient both INSERTs in one query (it enables multi-statements;
each statement's result, and its error, is read with `nextset()`: a cursor closed before would
drop the second statement's error). SQLite (in the process: no round trip to save, and one
statement per `execute`) sends them one after the other.

The retirement check is in the INSERT itself: a retired user's rows are never queued, and no
statement is spent to know it (the entry's SELECT then finds no snapshot and inserts nothing).
Where the database cannot return columns from an INSERT (MySQL; MariaDB ≥ 10.5 can) the ids
come from the cursor and the time from one `db_now()` per transaction (`outbox.changes` keeps it).
"""

import contextlib

from django.db import DatabaseError, connections, router

from clickhouse_outbox.models import Kind, OutboxEntry, Snapshot
from clickhouse_outbox.outbox.deletes import RETIREMENT

#: The database's UTC clock as `time_last_dumped` text ("%Y-%m-%d %H:%M:%S.%f+00:00", serializers.encoding.dump_time).
TIME_TEXT = {
    "postgresql": "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US\"+00:00\"')",
    "mysql": "DATE_FORMAT(UTC_TIMESTAMP(6), '%%Y-%%m-%%d %%H:%%i:%%s.%%f+00:00')",
    # SQLite's clock has milliseconds: padded to the microseconds every other row has.
    "sqlite": "(STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'now') || '000+00:00')",
}
#: The database's UTC clock as a value of a DateTimeField (Django stores UTC; naive on SQLite and MySQL).
NOW = {
    "postgresql": "clock_timestamp()",
    "mysql": "UTC_TIMESTAMP(6)",
    "sqlite": "STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f000', 'now')",
}

_COMPILED = {}


def compiled(connection, name):
    """The SQL of statement `name` for `connection`'s vendor and features, built once."""
    key = (connection.vendor, connection.features.can_return_columns_from_insert, name)
    sql = _COMPILED.get(key)
    if sql is None:
        sql = _COMPILED[key] = BUILDERS[name](connection)
    return sql


def _names(connection, model, fields):
    quote = connection.ops.quote_name
    return quote(model._meta.db_table), ", ".join(quote(model._meta.get_field(name).column) for name in fields)


def _param(connection, model, name):
    """A placeholder; PostgreSQL is told the column's type (a SELECT list gives it none to infer)."""
    if connection.vendor != "postgresql":
        return "%s"
    return f"CAST(%s AS {model._meta.get_field(name).db_type(connection)})"


SNAPSHOT_FIELDS = ("producer", "subject", "user_id", "reason", "status", "dump_id", "row_count", "table_rows",
                   "time_last_dumped", "digest", "error", "created")


def _snapshot_sql(connection, *, time_as_param):
    table, columns = _names(connection, Snapshot, SNAPSHOT_FIELDS)
    quote = connection.ops.quote_name
    params = ", ".join(_param(connection, Snapshot, name) for name in SNAPSHOT_FIELDS[:8])
    time_text = "%s" if time_as_param else TIME_TEXT[connection.vendor]
    dual = " FROM DUAL" if connection.vendor == "mysql" else ""
    sql = (
        f"INSERT INTO {table} ({columns}) SELECT {params}, {time_text}, %s, '', {NOW[connection.vendor]}{dual} "
        f"WHERE NOT EXISTS (SELECT 1 FROM {table} {quote('r')} WHERE {quote('r')}.{quote('producer')} = "
        f"'{RETIREMENT}' AND {quote('r')}.{quote('subject')} = %s)"
    )
    if connection.features.can_return_columns_from_insert:
        sql += f" RETURNING {quote('id')}, {quote('time_last_dumped')}"
    return sql


def _entry_sql(connection):
    fields = ("snapshot", "table", "kind", "status", "row_count", "payload", "encoding", "created")
    table, columns = _names(connection, OutboxEntry, fields)
    sql = f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s, %s, %s, %s, {NOW[connection.vendor]})"
    if connection.features.can_return_columns_from_insert:
        sql += f" RETURNING {connection.ops.quote_name('id')}"
    return sql


def _entry_update_sql(connection):
    quote = connection.ops.quote_name
    return (f"UPDATE {quote(OutboxEntry._meta.db_table)} SET {quote('payload')} = %s, {quote('row_count')} = %s "
            f"WHERE {quote('id')} = %s AND {quote('status')} = %s")


ENTRY_FIELDS = ("snapshot", "table", "kind", "status", "row_count", "payload", "encoding", "created")


#: The function migration 0013 creates on PostgreSQL: a snapshot and its entry, planned once per session.
QUEUE_ROW_FUNCTION = "clickhouse_outbox_queue_row"


def _row_sql(connection):
    """
    A snapshot and its entry in one round trip (`insert_row`): the entry's line is the
    parameters before and after its time, joined with the time the snapshot's INSERT stored.
    """
    if connection.vendor == "postgresql":
        # A statement sent as text is parsed and planned each time (Django keeps psycopg's prepared
        # statements off, for connection poolers): the function's two INSERTs are planned once a session.
        return f"SELECT * FROM {QUEUE_ROW_FUNCTION}({', '.join(['%s'] * 11)})"
    quote = connection.ops.quote_name
    snapshot = _snapshot_sql(connection, time_as_param=not connection.features.can_return_columns_from_insert)
    table, columns = _names(connection, OutboxEntry, ENTRY_FIELDS)
    params = ", ".join(_param(connection, OutboxEntry, name) for name in ("table", "kind", "status", "row_count"))
    # The second statement finds the first's row by its dump_id (unique), not by LAST_INSERT_ID(),
    # which keeps an earlier INSERT's id when the first inserted nothing.
    snapshots, row = quote(Snapshot._meta.db_table), quote("s")
    entry = (f"INSERT INTO {table} ({columns}) SELECT {row}.{quote('id')}, {params}, "
             f"CONCAT(%s, {row}.{quote('time_last_dumped')}, %s), '', {NOW[connection.vendor]} FROM {snapshots} {row} "
             f"WHERE {row}.{quote('dump_id')} = %s")
    if connection.features.can_return_columns_from_insert:
        entry += f" RETURNING {quote('id')}"
    return f"{snapshot}; {entry}"


BUILDERS = {
    "snapshot": lambda connection: _snapshot_sql(connection, time_as_param=False),
    "snapshot_timed": lambda connection: _snapshot_sql(connection, time_as_param=True),
    "entry": _entry_sql,
    "entry_update": _entry_update_sql,
    "row": _row_sql,
}


def _prep(connection, model, name, value):
    return model._meta.get_field(name).get_db_prep_save(value, connection)


def insert_snapshot(connection, *, producer, subject, user_id, reason, status, dump_id, row_count, table_rows,
                    time_text=None, guard_user=None, digest=""):
    """
    One Snapshot row; returns (id, time_last_dumped), or None when `guard_user` is retired
    (nothing written). `time_text` is needed only where `needs_time()`: else the database's clock.
    `digest`: `outbox.unchanged.row_digest` of the row, which the sweep compares with the source.
    """
    values = [producer, subject, user_id, reason, status,
              dump_id if connection.features.has_native_uuid_field else dump_id.hex, row_count,
              _table_rows(connection, table_rows)]
    returning = connection.features.can_return_columns_from_insert
    if not returning:
        values.append(time_text)
    values.append(digest)
    # No user to guard: the retirement of user "" never exists.
    values.append("" if guard_user is None else str(guard_user))
    with connection.cursor() as cursor:
        cursor.execute(compiled(connection, "snapshot" if returning else "snapshot_timed"), values)
        if returning:
            row = cursor.fetchone()
            return None if row is None else (row[0], row[1])
        if cursor.rowcount == 0:
            return None
        return cursor.lastrowid, time_text


QUEUED, INSERT, PENDING = Snapshot.Status.QUEUED.value, Kind.INSERT.value, OutboxEntry.Status.PENDING.value
_ONE_ROW = {}


def _one_row(connection, table):
    """`table_rows` of a one-row snapshot of `table` (None: of a request, empty), prepared for `connection`'s vendor once."""
    key = (connection.vendor, table)
    value = _ONE_ROW.get(key)
    if value is None:
        value = _ONE_ROW[key] = _prep(connection, Snapshot, "table_rows", {} if table is None else {table: 1})
    return value


def _table_rows(connection, table_rows):
    """`table_rows` prepared for the database: a one-row snapshot's or a request's (empty) prepared once."""
    if not table_rows:
        return _one_row(connection, None)
    if len(table_rows) == 1:
        ((table, rows),) = table_rows.items()
        if rows == 1:
            return _one_row(connection, table)
    return _prep(connection, Snapshot, "table_rows", table_rows)


def one_trip(connection):
    """
    Whether `insert_row` can send a snapshot and its entry in one round trip: PostgreSQL, and
    MySQL/MariaDB through mysqlclient with its multi-statements on (its default; not PyMySQL).
    """
    if connection.vendor == "postgresql":
        return True
    return (connection.vendor == "mysql" and connection.Database.__name__ == "MySQLdb"
            and connection.settings_dict.get("OPTIONS", {}).get("multi_statements", True))


def insert_row(connection, *, producer, subject, user_id, reason, dump_id, table, head, tail, digest="",
               time_text=None, guard_user=None):
    """
    A queued one-row snapshot of `table` and its pending entry, whose line is `head`, the
    snapshot's time_last_dumped, then `tail`, in one round trip (where `one_trip`). Returns
    (snapshot id, time_last_dumped, entry id), or None when `guard_user` is retired (nothing
    written). `time_text` is needed only where `needs_time()`, as for `insert_snapshot`.
    """
    guard = "" if guard_user is None else str(guard_user)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(compiled(connection, "row"), [producer, subject, user_id, reason, dump_id,
                                                          _one_row(connection, table), digest, guard, table, head, tail])
            row = cursor.fetchone()
        return None if row[0] is None else (row[0], row[1], row[2])
    returning = connection.features.can_return_columns_from_insert
    prepared_dump_id = dump_id if connection.features.has_native_uuid_field else dump_id.hex
    values = [producer, subject, user_id, reason, QUEUED, prepared_dump_id, 1, _one_row(connection, table),
              *(() if returning else (time_text,)), digest, guard, table, INSERT, PENDING, 1, head, tail, prepared_dump_id]
    with connection.cursor() as cursor:
        cursor.execute(compiled(connection, "row"), values)
        # Each statement's result read here, the second's error too: only nextset() raises it.
        if returning:
            snapshot = cursor.fetchone()
        else:
            snapshot = (cursor.lastrowid, time_text) if cursor.rowcount == 1 else None
        try:
            if not cursor.nextset():
                raise RuntimeError("clickhouse_outbox: the entry's INSERT gave no result (multi-statements off?)")
            if returning:
                entry_row = cursor.fetchone()
                entry_id = None if entry_row is None else entry_row[0]
            else:
                entry_id = cursor.lastrowid if cursor.rowcount == 1 else None
            while cursor.nextset():  # nothing more was sent; read to the end all the same
                pass
            if snapshot is not None and entry_id is None:
                raise RuntimeError(f"clickhouse_outbox: the entry of snapshot {snapshot[0]} was not written")
        except Exception:
            if snapshot is not None:
                withdraw_snapshot(connection, dump_id)
            raise
    return None if snapshot is None else (snapshot[0], snapshot[1], entry_id)


def withdraw_snapshot(connection, dump_id):
    """
    Delete the snapshot whose entry's INSERT failed (MySQL and SQLite undo the failed statement,
    not the one before, and openedx-events' `send_robust` keeps the error from the platform's
    transaction, which commits): no snapshot stays without its entry. Best effort: where the
    transaction is gone (PostgreSQL aborts it; a deadlock) there is nothing to delete.
    """
    quote = connection.ops.quote_name
    with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {quote(Snapshot._meta.db_table)} WHERE {quote('dump_id')} = %s",
                       [_prep(connection, Snapshot, "dump_id", dump_id)])


def needs_time(connection):
    """Whether `insert_snapshot` must be given the time (the database cannot return it)."""
    return not connection.features.can_return_columns_from_insert


def insert_entry(connection, snapshot_id, table, lines, row_count):
    """One pending insert entry holding `lines` raw (a row or two: too short to gain from gzip); returns its id."""
    values = [snapshot_id, table, INSERT, PENDING, row_count, connection.Database.Binary(lines), ""]
    with connection.cursor() as cursor:
        cursor.execute(compiled(connection, "entry"), values)
        if connection.features.can_return_columns_from_insert:
            return cursor.fetchone()[0]
        return cursor.lastrowid


def update_entry(connection, entry_id, lines, row_count):
    """Replace the rows of a pending entry this transaction wrote; False if it is not pending any more."""
    values = [_prep(connection, OutboxEntry, "payload", lines), row_count, entry_id, OutboxEntry.Status.PENDING.value]
    with connection.cursor() as cursor:
        cursor.execute(compiled(connection, "entry_update"), values)
        return cursor.rowcount == 1


def connection_for_outbox():
    """The connection the outbox's models are written through (the platform's transaction)."""
    return connections[router.db_for_write(Snapshot)]
