"""
Helpers of the outbox tests: every table of the app, its stored values as bytes, a
ClickHouse table whose schema drifted, and a drain that waits out split parts.
"""

import gzip
import json
from dataclasses import replace

from django.apps import apps

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.clickhouse.schema import create_table_sql
from clickhouse_outbox.clickhouse.tables import Column, get_table
from clickhouse_outbox.db import db_now
from clickhouse_outbox.models import Batch
from clickhouse_outbox.outbox.drain import drain


def as_bytes(value):
    """A stored value as bytes to search: a gzip payload decompressed, JSON written with and without ASCII escapes."""
    if value is None:
        return b""
    if isinstance(value, memoryview):
        value = bytes(value)
    if isinstance(value, bytes):
        return gzip.decompress(value) if value[:2] == b"\x1f\x8b" else value
    if isinstance(value, (dict, list)):
        return json.dumps(value).encode() + b"\n" + json.dumps(value, ensure_ascii=False).encode()
    return str(value).encode()


def app_tables():
    """Every table of the app: its concrete models (proxies share their model's table)."""
    return [model for model in apps.get_app_config("clickhouse_outbox").get_models() if not model._meta.proxy]


def drift(backend, table_name, column, new_type):
    """Recreate a ClickHouse table with one column of another type: the schema drifted, its rows are rejected."""
    table = get_table(table_name)
    drifted = replace(table, columns=tuple(Column(c.name, new_type) if c.name == column else c for c in table.columns))
    backend.command(f"DROP TABLE {qualified_name(backend.database, table_name)}")
    backend.command(create_table_sql(drifted, backend.database, backend.server_info()))


def drain_until_settled():
    """Drain until no batch waits or is being sent: split parts are retried, rejected rows fail for good."""
    for _ in range(20):
        drain()
        if not Batch.objects.filter(status__in=[Batch.Status.RETRY, Batch.Status.CLAIMED]).exists():
            return
        Batch.objects.filter(status=Batch.Status.RETRY).update(next_attempt_at=db_now())
    raise AssertionError("batches still waiting after 20 drains")
