"""
OutboxEntry.snapshot without an index of its own: ch_outbox_entry_snapshot (snapshot, status)
serves every lookup by snapshot, and each index costs a write per entry.

Only the index is dropped (PostgreSQL, SQLite; MySQL and MariaDB never had one apart from the
composite, which InnoDB uses for the foreign key): Django's own AlterField would drop and add
the foreign key again, which checks (MySQL: copies) the whole table, minutes on a large outbox.
"""

from django.db import migrations, models
import django.db.models.deletion


def drop_snapshot_index(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "mysql":
        return
    table = apps.get_model("clickhouse_outbox", "OutboxEntry")._meta.db_table
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    for name, info in constraints.items():
        if info["index"] and not info["primary_key"] and not info["unique"] and info["columns"] == ["snapshot_id"]:
            schema_editor.execute(f"DROP INDEX {schema_editor.quote_name(name)}")


def add_snapshot_index(apps, schema_editor):
    if schema_editor.connection.vendor == "mysql":
        return
    model = apps.get_model("clickhouse_outbox", "OutboxEntry")
    field = model._meta.get_field("snapshot")
    schema_editor.execute(schema_editor._create_index_sql(model, fields=[field]))


class Migration(migrations.Migration):

    dependencies = [
        ("clickhouse_outbox", "0013_queue_row_function"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="outboxentry",
                    name="snapshot",
                    field=models.ForeignKey(blank=True, db_index=False, null=True,
                                            on_delete=django.db.models.deletion.CASCADE, related_name="entries",
                                            to="clickhouse_outbox.snapshot"),
                ),
            ],
            database_operations=[migrations.RunPython(drop_snapshot_index, add_snapshot_index)],
        ),
    ]
