"""
The deferred drain's writes for the requests of a one-row producer (decision record 0015),
as SQL built once per connection vendor: thousands of rows per statement, their values sent
as data (arrays, a JSON document, one multi-row VALUES), never a statement per row where a
round trip costs.

    fill_snapshots   the requests queued, each with its row's digest and user: one UPDATE
                     joined to the values (PostgreSQL: unnest of three comma-separated texts
                     the server splits; MySQL and MariaDB: JSON_TABLE of one JSON document,
                     joined first); SQLite, in the process, an executemany
    insert_entries   their entries, one line each: PostgreSQL a binary COPY (psycopg 3; with
                     psycopg2 one INSERT from unnest of two arrays); MySQL and MariaDB
                     multi-row VALUES of at most STATEMENT_BYTES, each payload escaped by the
                     client library's C escaper; SQLite executemany

A fill's lines and digests are computed before its transaction starts writing; the UPDATE
only changes requests still `requested` (and, where the claim took them by lease, still the
drainer's): its row count says whether the drainer still has every one.
"""

import json

from django.db import connections, router

from clickhouse_outbox.models import Kind, OutboxEntry, Snapshot

#: The largest multi-row INSERT sent to MySQL/MariaDB (their max_allowed_packet is 16 MiB by
#: default on MariaDB, 64 MiB on MySQL 8; 4 MiB on older servers).
STATEMENT_BYTES = 1 << 20

_COMPILED = {}


def connection_for_outbox():
    return connections[router.db_for_write(Snapshot)]


def compiled(connection, name, *args):
    key = (connection.vendor, name, *args)
    sql = _COMPILED.get(key)
    if sql is None:
        sql = _COMPILED[key] = BUILDERS[name](connection, *args)
    return sql


def _columns(connection, model, *names):
    quote = connection.ops.quote_name
    return [quote(model._meta.get_field(name).column) for name in names]


def _fill_sql(connection, leased):
    """The UPDATE of `fill_snapshots`; its params: status, time, table_rows, the values, requested[, owner]."""
    quote = connection.ops.quote_name
    table = quote(Snapshot._meta.db_table)
    status, time_text, row_count, table_rows, digest, user, owner, expires, pk = _columns(
        connection, Snapshot, "status", "time_last_dumped", "row_count", "table_rows", "digest", "user_id",
        "lease_owner", "lease_expires_at", "id")
    if connection.vendor == "sqlite":  # one row per execution (executemany, in the process)
        return (f"UPDATE {table} SET {status} = %s, {time_text} = %s, {row_count} = 1, {table_rows} = %s, "
                f"{owner} = NULL, {expires} = NULL, {digest} = %s, {user} = %s "
                f"WHERE {pk} = %s AND {status} = %s" + (f" AND {owner} = %s" if leased else ""))
    s, v, d, u, i = (quote(name) for name in ("s", "v", "d", "u", "id"))
    json_type = "CAST(%s AS jsonb)" if connection.vendor == "postgresql" else "%s"
    assignments = (f"{s}.{status} = %s, {s}.{time_text} = %s, {s}.{row_count} = 1, {s}.{table_rows} = {json_type}, "
                   f"{s}.{owner} = NULL, {s}.{expires} = NULL, {s}.{digest} = {v}.{d}, {s}.{user} = {v}.{u}")
    where = f"{s}.{status} = %s" + (f" AND {s}.{owner} = %s" if leased else "")
    if connection.vendor == "postgresql":  # SET names the target's columns unqualified
        assignments = assignments.replace(f"{s}.", "")
        return (f"UPDATE {table} AS {s} SET {assignments} "
                f"FROM unnest(string_to_array(%s, ',')::bigint[], string_to_array(%s, ','), "
                f"string_to_array(%s, ',', '')::bigint[]) AS {v} ({i}, {d}, {u}) "
                f"WHERE {s}.{pk} = {v}.{i} AND {where}")
    # MySQL and MariaDB: the values one JSON document, [[id, digest, user], ...].
    # The values first, then each request by its key (STRAIGHT_JOIN): a scan of the requests
    # would wait on the row locks of the requests another drainer holds.
    return (f"UPDATE JSON_TABLE(%s, '$[*]' COLUMNS ({i} BIGINT PATH '$[0]', {d} VARCHAR(32) PATH '$[1]', "
            f"{u} BIGINT PATH '$[2]')) {v} STRAIGHT_JOIN {table} {s} ON {s}.{pk} = {v}.{i} "
            f"SET {assignments} WHERE {where}")


ENTRY_FIELDS = ("snapshot", "table", "kind", "status", "row_count", "payload", "encoding", "created")


def _entries_sql(connection):
    quote = connection.ops.quote_name
    table = quote(OutboxEntry._meta.db_table)
    columns = ", ".join(_columns(connection, OutboxEntry, *ENTRY_FIELDS))
    if connection.vendor == "postgresql":
        # Two arrays, not a row of parameters per entry: psycopg's executemany is one INSERT per row.
        return (f"INSERT INTO {table} ({columns}) SELECT {quote('s')}, %s, %s, %s, 1, {quote('p')}, '', %s "
                f"FROM unnest(%s::bigint[], %s::bytea[]) AS {quote('t')} ({quote('s')}, {quote('p')})")
    if connection.vendor == "mysql":  # the head of a multi-row INSERT whose rows `insert_entries` writes
        return f"INSERT INTO {table} ({columns}) VALUES "
    return f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(ENTRY_FIELDS))})"


BUILDERS = {"fill": _fill_sql, "entries": _entries_sql}


def fill_snapshots(connection, rows, *, time_text, table, owner=None):
    """
    Make the requests of `rows` (snapshot id, digest, user id) queued with that digest and
    user, `time_text` as their time_last_dumped and one row of `table`: only those still
    requested and, with an `owner`, still leased to it. Returns how many were.
    """
    if not rows:
        return 0
    leased = owner is not None
    head = [Snapshot.Status.QUEUED.value, time_text, json.dumps({table: 1})]
    tail = [Snapshot.Status.REQUESTED.value] + ([owner.hex if connection.vendor != "postgresql" else owner]
                                                if leased else [])
    sql = compiled(connection, "fill", leased)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.executemany(sql, [(*head, digest, user_id, pk, *tail) for pk, digest, user_id in rows])
        elif connection.vendor == "postgresql":
            # Each column one text of comma-separated values the server splits (an id, a hex
            # digest hold no comma; a missing user is the empty string, NULL): no array quoted
            # element by element in Python.
            ids, digests, users = zip(*rows, strict=True)
            columns = [",".join(map(str, ids)), ",".join(digests), ",".join("" if user is None else str(user) for user in users)]
            cursor.execute(sql, [*head, *columns, *tail])
        else:
            cursor.execute(sql, [json.dumps(rows), *head, *tail])
        return cursor.rowcount


def insert_entries(connection, table, rows, now):
    """
    Pending insert entries of one row each, `rows` being (snapshot id, raw line), created at
    `now` (the database's time, read by the caller).
    """
    if not rows:
        return
    kind, status = Kind.INSERT.value, OutboxEntry.Status.PENDING.value
    created = OutboxEntry._meta.get_field("created").get_db_prep_save(now, connection)
    sql = compiled(connection, "entries")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            if hasattr(cursor.cursor, "copy"):  # psycopg 3
                copy_entries(connection, cursor.cursor, table, kind, status, now, rows)
            else:
                ids, payloads = zip(*rows, strict=True)
                cursor.execute(sql, [table, kind, status, created, list(ids), list(payloads)])
        elif connection.vendor == "mysql":
            for statement in mysql_inserts(connection, sql, table, kind, status, created, rows):
                cursor.execute(statement)
        else:
            cursor.executemany(sql, [(snapshot_id, table, kind, status, 1, lines, "", created)
                                     for snapshot_id, lines in rows])


#: The entries' columns as COPY … (FORMAT BINARY) sends them, in ENTRY_FIELDS' order.
COPY_TYPES = ("int8", "varchar", "varchar", "varchar", "int4", "bytea", "varchar", "timestamptz")


def copy_entries(connection, cursor, table, kind, status, now, rows):
    """
    PostgreSQL with psycopg 3: the entries by COPY in binary, each value sent as its bytes
    (Django's client-side binding quotes and escapes every payload of an array in Python,
    about as long as the INSERT itself took the server).
    """
    quote = connection.ops.quote_name
    columns = ", ".join(_columns(connection, OutboxEntry, *ENTRY_FIELDS))
    with cursor.copy(f"COPY {quote(OutboxEntry._meta.db_table)} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(COPY_TYPES)
        write = copy.write_row
        for snapshot_id, lines in rows:
            write((snapshot_id, table, kind, status, 1, lines, "", now))


def mysql_inserts(connection, head, table, kind, status, created, rows):
    """
    Multi-row INSERTs of the entries, each at most STATEMENT_BYTES: the constant columns
    escaped once, each payload by the client library's escaper (MySQLdb's executemany
    escapes and formats every value of every row in Python, most of a fill's time there).
    """
    connection.ensure_connection()
    raw = connection.connection
    literal = raw.string_literal  # bytes → b"'…'", escaped for the connection's character set
    constants = b", ".join(raw.literal(value) for value in (table, kind, status))
    after = b", 1, _binary "
    end = b", '', " + raw.literal(created) + b")"
    head_bytes = head.encode()
    parts, size = [], len(head_bytes)
    for snapshot_id, lines in rows:
        value = b"(%d, %s%s%s%s" % (snapshot_id, constants, after, literal(lines), end)
        if parts and size + len(value) + 2 > STATEMENT_BYTES:
            yield head_bytes + b", ".join(parts)
            parts, size = [], len(head_bytes)
        parts.append(value)
        size += len(value) + 2
    if parts:
        yield head_bytes + b", ".join(parts)
