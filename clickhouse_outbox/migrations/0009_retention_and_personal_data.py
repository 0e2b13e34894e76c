# Retention and personal data: entries that will never be sent found by age (an index); each part of
# a split batch names the batch it came from (a retirement clears the error of every batch that
# carried the user's rows); the "rejected" state of a snapshot whose failed rows were purged.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('clickhouse_outbox', '0008_snapshot_digest'),
    ]

    operations = [
        migrations.AddField(
            model_name='batch',
            name='split_from',
            field=models.ForeignKey(blank=True, editable=False, help_text='The batch ClickHouse rejected that this one holds part of.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='clickhouse_outbox.batch'),
        ),
        migrations.AlterField(
            model_name='snapshot',
            name='status',
            field=models.CharField(choices=[('requested', 'Requested: taken at the next drain'), ('queued', 'Queued'), ('failed', 'Could not be taken'), ('superseded', 'Superseded by a newer snapshot'), ('dismissed', 'Dismissed: the source does not know the subject'), ('deleted', 'Deleted: its rows were removed (a retired user, a deleted subject)'), ('rejected', 'Rejected: ClickHouse refused rows of it for good; they were purged')], default='queued', max_length=16),
        ),
        migrations.AlterField(
            model_name='snapshot',
            name='user_id',
            field=models.BigIntegerField(blank=True, help_text='The user whose personal data the rows hold, for retirement (producers of personal data).', null=True),
        ),
        migrations.AddIndex(
            model_name='outboxentry',
            index=models.Index(fields=['status', 'created'], name='ch_outbox_entry_age'),
        ),
    ]
