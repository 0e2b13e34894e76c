# The digest of a snapshot's rows: a signal's snapshot with the rows of the latest unsent one is not written.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('clickhouse_outbox', '0007_verification'),
    ]

    operations = [
        migrations.AddField(
            model_name='snapshot',
            name='digest',
            field=models.CharField(blank=True, editable=False, help_text="Of its rows without dump_id and time_last_dumped: a signal's snapshot with the same rows adds nothing.", max_length=32),
        ),
    ]
