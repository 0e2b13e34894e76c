"""
PostgreSQL only: the function a learner change queues its row with (decision record 0015,
addendum), one statement whose two INSERTs are planned once per database session (a
statement sent as text is parsed and planned again each time: most of the server's time for
these two small INSERTs). Not a prepared statement: connection poolers (PgBouncer in transaction
mode) keep working, which is why Django turns psycopg's prepared statements off by default.

It writes what `outbox.row_inserts` wrote before: the snapshot, unless the user is retired (the
ledger of decision record 0010), with the database's clock as its time_last_dumped, then its
pending entry holding the line `head`, that time, `tail`. It returns the snapshot's id, its
time and the entry's id, or NULLs when the user is retired (nothing written).
"""

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION clickhouse_outbox_queue_row(
    p_producer varchar, p_subject varchar, p_user_id bigint, p_reason varchar, p_dump_id uuid, p_table_rows jsonb,
    p_digest varchar, p_guard varchar, p_table varchar, p_head bytea, p_tail bytea,
    OUT snapshot_id bigint, OUT time_last_dumped varchar, OUT entry_id bigint)
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    INSERT INTO clickhouse_outbox_snapshot (producer, subject, user_id, reason, status, dump_id, row_count, table_rows,
                                            time_last_dumped, digest, error, created)
    SELECT p_producer, p_subject, p_user_id, p_reason, 'queued', p_dump_id, 1, p_table_rows,
           to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US"+00:00"'), p_digest, '',
           clock_timestamp()
    WHERE NOT EXISTS (SELECT 1 FROM clickhouse_outbox_snapshot r
                      WHERE r.producer = 'user_retirement' AND r.subject = p_guard)
    RETURNING clickhouse_outbox_snapshot.id, clickhouse_outbox_snapshot.time_last_dumped
    INTO snapshot_id, time_last_dumped;
    IF snapshot_id IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO clickhouse_outbox_outboxentry (snapshot_id, "table", kind, status, row_count, payload, encoding, created)
    VALUES (snapshot_id, p_table, 'insert', 'pending', 1, p_head || convert_to(time_last_dumped, 'UTF8') || p_tail, '',
            clock_timestamp())
    RETURNING clickhouse_outbox_outboxentry.id INTO entry_id;
END
$fn$
"""
DROP = ("DROP FUNCTION IF EXISTS clickhouse_outbox_queue_row(varchar, varchar, bigint, varchar, uuid, jsonb, varchar, "
        "varchar, varchar, bytea, bytea)")


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):

    dependencies = [
        ("clickhouse_outbox", "0012_verify_by_key_range"),
    ]

    operations = [
        migrations.RunPython(create, drop, elidable=False),
    ]
