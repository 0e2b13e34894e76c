"""
The standalone project keeps its cache (the drain task's lock, the purge timer) in the
database: `migrate` creates the cache table, so no set-up step can be forgotten.
"""

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = []
    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop, elidable=False)]
