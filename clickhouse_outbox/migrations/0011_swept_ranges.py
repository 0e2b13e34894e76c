# The sweep (reconcile.sweep): the digest of each range of a learner or tag table it read last; the
# "differs" verdict of a verification that compares content (reconcile.content).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('clickhouse_outbox', '0010_key_range_dumps'),
    ]

    operations = [
        migrations.AlterField(
            model_name='verdict',
            name='verdict',
            field=models.CharField(choices=[('ok', 'OK'), ('absent', 'Not in ClickHouse'), ('missing', 'Missing rows'), ('duplicates', 'Duplicated rows'), ('stale', 'Stale'), ('differs', 'Content differs from the source'), ('undelivered', 'Not delivered yet'), ('never', 'Never sent by the outbox')], max_length=16),
        ),
        migrations.CreateModel(
            name='SweptRange',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('producer', models.CharField(max_length=64)),
                ('key_from', models.BigIntegerField(help_text='The first primary key of the range.')),
                ('key_to', models.BigIntegerField(help_text='The last primary key of the range (inclusive).')),
                ('digest', models.CharField(max_length=32)),
                ('rows', models.PositiveIntegerField(default=0)),
                ('queued', models.PositiveIntegerField(default=0, help_text='Rows the last sweep of the range queued (they differed).')),
                ('swept_at', models.DateTimeField(help_text='Database time.')),
            ],
            options={
                'ordering': ['producer', 'key_from'],
                'constraints': [models.UniqueConstraint(fields=('producer', 'key_from'), name='ch_outbox_swept_range_once')],
            },
        ),
    ]
