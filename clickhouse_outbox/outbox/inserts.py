"""
The INSERT of outbox entries, with their payloads sent as the database reads them fastest.

A publish writes its payloads (about 70 kB of gzip for a 1,000-block course) inside the
change's transaction, and the drivers' usual way of sending bytes cost more than the rest of
the statement: psycopg's client-side binding (Django's default) writes a bytea as an escaped
literal (1.5-2 ms for 70 kB), and mysqlclient escapes every byte (about 1 ms) before MariaDB
unescapes it. So, on PostgreSQL the statement is bound on the server (the bytes go as a
binary parameter) and on MariaDB/MySQL a payload is a hexadecimal literal; SQLite binds a
blob natively. The rows are those `bulk_create` writes (decision record 0018).
"""

from contextlib import contextmanager

from django.db import connection

from clickhouse_outbox.models import OutboxEntry

#: The columns written, in order (the primary key and `batch`, null, left to the database).
FIELDS = ("snapshot", "table", "kind", "status", "row_count", "payload", "encoding", "created")


def insert_entries(entries, *, statement_bytes):
    """
    INSERT `entries` (unsaved OutboxEntry objects) in statements of at most about
    `statement_bytes` of payload as sent (a hexadecimal literal is twice its bytes); their
    ids are not read back.
    """
    hex_payloads = connection.vendor == "mysql"
    largest = max((len(entry.payload) for entry in entries), default=1) * (2 if hex_payloads else 1)
    batch_size = max(1, statement_bytes // max(1, largest))
    if connection.vendor not in ("postgresql", "mysql") or not entries:
        OutboxEntry.objects.bulk_create(entries, batch_size=batch_size)
        return
    fields = [OutboxEntry._meta.get_field(name) for name in FIELDS]
    quote = connection.ops.quote_name
    head = f"INSERT INTO {quote(OutboxEntry._meta.db_table)} ({', '.join(quote(field.column) for field in fields)}) VALUES "
    with server_bound_cursor() as cursor:
        for start in range(0, len(entries), batch_size):
            values, params = [], []
            for entry in entries[start:start + batch_size]:
                marks = []
                for field in fields:
                    value = field.get_db_prep_save(field.pre_save(entry, True), connection)
                    if hex_payloads and field.name == "payload":
                        marks.append(f"X'{bytes(value).hex()}'")  # hexadecimal digits only: nothing to escape
                    else:
                        marks.append("%s")
                        params.append(value)
                values.append(f"({', '.join(marks)})")
            cursor.execute(head + ", ".join(values), params)


@contextmanager
def server_bound_cursor():
    """
    A cursor of Django's connection (its execute wrappers and query log see it) that binds
    parameters on the server where the driver can (psycopg 3); else Django's own cursor.
    Its statements are never prepared (unnamed, as a connection pooler in transaction mode
    such as PgBouncer needs), whatever the connection's prepare_threshold.
    """
    if connection.vendor == "postgresql":
        from django.db.backends.postgresql.psycopg_any import is_psycopg3  # noqa: PLC0415 (PostgreSQL only)

        if is_psycopg3:
            import psycopg  # noqa: PLC0415

            connection.ensure_connection()
            raw = connection.connection
            threshold, raw.prepare_threshold = raw.prepare_threshold, None
            try:
                with connection._prepare_cursor(psycopg.Cursor(raw)) as cursor:  # noqa: SLF001
                    yield cursor
            finally:
                raw.prepare_threshold = threshold
            return
    with connection.cursor() as cursor:
        yield cursor
