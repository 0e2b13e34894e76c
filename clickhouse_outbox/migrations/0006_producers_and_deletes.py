# Every Aspects sink through the outbox: snapshots know the user whose data they hold,
# entries and batches insert or delete, and dump jobs dump the subjects of any producer.

import django.db.models.deletion
from django.db import migrations, models

KINDS = [("insert", "Insert"), ("delete", "Delete")]


class Migration(migrations.Migration):

    dependencies = [
        ("clickhouse_outbox", "0005_entry_snapshot_index"),
    ]

    operations = [
        # Snapshots: the user whose personal data the rows hold, and the deleted state.
        migrations.AddField(
            model_name="snapshot",
            name="user_id",
            field=models.BigIntegerField(
                blank=True, null=True,
                help_text="The user whose personal data the rows hold, for retirement (PII producers).",
            ),
        ),
        migrations.AlterField(
            model_name="snapshot",
            name="status",
            field=models.CharField(
                choices=[
                    ("requested", "Requested: taken at the next drain"),
                    ("queued", "Queued"),
                    ("failed", "Could not be taken"),
                    ("superseded", "Superseded by a newer snapshot"),
                    ("dismissed", "Dismissed: the source does not know the subject"),
                    ("deleted", "Deleted: its rows were removed (a retired user, a deleted subject)"),
                ],
                default="queued", max_length=16,
            ),
        ),
        migrations.AddIndex(
            model_name="snapshot",
            index=models.Index(fields=["user_id"], name="ch_outbox_snapshot_user"),
        ),
        migrations.AlterModelOptions(
            name="snapshot",
            options={
                "ordering": ["-id"],
                "permissions": [
                    ("requeue_course", "Can requeue courses and other subjects (take a new snapshot)"),
                    ("dismiss_snapshot", "Can dismiss failed snapshots of unknown courses"),
                ],
            },
        ),
        # Entries and batches insert or delete.
        migrations.AddField(
            model_name="batch",
            name="kind",
            field=models.CharField(choices=KINDS, default="insert", max_length=8),
        ),
        migrations.AddField(
            model_name="outboxentry",
            name="kind",
            field=models.CharField(choices=KINDS, default="insert", max_length=8),
        ),
        migrations.AlterField(
            model_name="outboxentry",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "Pending"),
                    ("batched", "In a batch"),
                    ("superseded", "Superseded by a newer snapshot"),
                    ("split", "Split to isolate rejected rows"),
                    ("removed", "Removed by a retirement or a delete"),
                ],
                default="pending", max_length=16,
            ),
        ),
        migrations.RemoveIndex(model_name="outboxentry", name="ch_outbox_entry_pending"),
        migrations.AddIndex(
            model_name="outboxentry",
            index=models.Index(fields=["status", "kind", "table", "id"], name="ch_outbox_entry_pending_kind"),
        ),
        # Dump jobs of any producer: DumpJobCourse becomes DumpJobItem (producer, subject).
        migrations.AddField(
            model_name="dumpjob",
            name="producers",
            field=models.CharField(
                default="course_structure", max_length=255,
                help_text="The producers whose subjects it dumps, comma-separated.",
            ),
        ),
        migrations.AlterField(
            model_name="dumpjob",
            name="scope",
            field=models.CharField(
                choices=[("all", "All"), ("changed", "Changed since"), ("selected", "Selected")],
                default="all", max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="dumpjob",
            name="status",
            field=models.CharField(
                choices=[
                    ("queued", "Queued"),
                    ("running", "Running"),
                    ("done", "Done"),
                    ("cancelled", "Cancelled"),
                    ("failed", "Failed: the subjects could not be listed"),
                ],
                default="queued", max_length=16,
            ),
        ),
        migrations.RemoveConstraint(model_name="dumpjobcourse", name="ch_outbox_dump_course_once"),
        migrations.RemoveIndex(model_name="dumpjobcourse", name="ch_outbox_dump_course_next"),
        migrations.RenameModel(old_name="DumpJobCourse", new_name="DumpJobItem"),
        migrations.RenameField(model_name="dumpjobitem", old_name="course_key", new_name="subject"),
        migrations.AddField(
            model_name="dumpjobitem",
            name="producer",
            field=models.CharField(default="course_structure", max_length=64),
        ),
        migrations.AlterField(
            model_name="dumpjobitem",
            name="job",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="items", to="clickhouse_outbox.dumpjob"
            ),
        ),
        migrations.AddConstraint(
            model_name="dumpjobitem",
            constraint=models.UniqueConstraint(fields=("job", "producer", "subject"), name="ch_outbox_dump_item_once"),
        ),
        migrations.AddIndex(
            model_name="dumpjobitem",
            index=models.Index(fields=["job", "status", "position"], name="ch_outbox_dump_item_next"),
        ),
        # The admin's view of the other producers' subjects.
        migrations.CreateModel(
            name="SubjectDelivery",
            fields=[],
            options={
                "verbose_name": "learner or tag",
                "verbose_name_plural": "learners and tags",
                "proxy": True,
                "indexes": [],
                "constraints": [],
            },
            bases=("clickhouse_outbox.snapshot",),
        ),
    ]
