# Verification (issue 14): rows per table on each snapshot, verify jobs, the last verdict of each subject.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('clickhouse_outbox', '0006_producers_and_deletes'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='dumpjob',
            options={'ordering': ['-id'], 'permissions': [('start_dumpjob', 'Can start full dumps'), ('cancel_dumpjob', 'Can cancel full dumps and verifications'), ('start_verification', 'Can verify what ClickHouse holds')]},
        ),
        migrations.AddField(
            model_name='dumpjob',
            name='action',
            field=models.CharField(choices=[('dump', 'Dump: take a new snapshot of each'), ('verify', 'Verify: compare what ClickHouse holds with what was delivered')], default='dump', max_length=8),
        ),
        migrations.AddField(
            model_name='dumpjob',
            name='repair',
            field=models.BooleanField(default=False, help_text='A verification that, once done, dumps again what differs (a dump job of its own).'),
        ),
        migrations.AddField(
            model_name='dumpjob',
            name='repair_job',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='clickhouse_outbox.dumpjob'),
        ),
        migrations.AddField(
            model_name='dumpjob',
            name='replicas',
            field=models.CharField(choices=[('one', 'Through the configured server (one replica)'), ('each', 'On each replica')], default='one', max_length=8),
        ),
        migrations.AddField(
            model_name='snapshot',
            name='table_rows',
            field=models.JSONField(blank=True, default=dict, help_text='Rows per table: what ClickHouse holds for this dump_id once delivered.'),
        ),
        migrations.CreateModel(
            name='Verdict',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('producer', models.CharField(max_length=64)),
                ('subject', models.CharField(max_length=255)),
                ('verdict', models.CharField(choices=[('ok', 'OK'), ('absent', 'Not in ClickHouse'), ('missing', 'Missing rows'), ('duplicates', 'Duplicated rows'), ('stale', 'Stale'), ('undelivered', 'Not delivered yet'), ('never', 'Never sent by the outbox')], max_length=16)),
                ('details', models.JSONField(blank=True, default=dict, help_text='Per table (and replica): rows expected, found, distinct.')),
                ('checked_at', models.DateTimeField()),
                ('job', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='verdicts', to='clickhouse_outbox.dumpjob')),
                ('snapshot', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='clickhouse_outbox.snapshot')),
            ],
            options={
                'ordering': ['producer', 'subject'],
                'indexes': [models.Index(fields=['verdict', 'producer'], name='ch_outbox_verdict_kind')],
                'constraints': [models.UniqueConstraint(fields=('producer', 'subject'), name='ch_outbox_verdict_once')],
            },
        ),
    ]
