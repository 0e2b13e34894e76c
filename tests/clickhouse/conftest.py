"""Shared helpers for the ClickHouse backend tests."""

import json
import uuid

import pytest

from clickhouse_outbox.clickhouse.backends import reset_backends
from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.clickhouse.backends.http import HttpBackend
from clickhouse_outbox.clickhouse.tables import COURSE_BLOCKS


@pytest.fixture(autouse=True)
def _fresh_backend_cache():
    reset_backends()
    yield
    reset_backends()


def backend_config(backend, server_config):
    """The EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG that names `backend`'s database."""
    if isinstance(backend, HttpBackend):
        return dict(server_config, database=backend.database)
    return {"url": f"chdb://{backend.path}", "database": backend.database}


def block_row(order, display_name="Block", dump_id=None, **overrides):
    row = {
        "org": "OpenedX",
        "course_key": "course-v1:OpenedX+DemoX+2025",
        "location": f"block-v1:OpenedX+DemoX+2025+type@vertical+block@b{order}",
        "display_name": display_name,
        "xblock_data_json": json.dumps({"block_type": "vertical", "section": 1, "subsection": 1, "unit": order}),
        "order": order,
        "edited_on": "2025-01-01 00:00:00.000000+00:00",
        "dump_id": dump_id or "11111111-2222-4333-8444-555555555555",
        "time_last_dumped": "2025-01-01 00:00:01.000000+00:00",
    }
    row.update(overrides)
    return row


def encode_rows(rows):
    """JSONEachRow bytes, non-ASCII as raw UTF-8 (what a serializer may well send)."""
    return b"".join(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n" for row in rows)


def new_dump_id():
    return str(uuid.uuid4())


def create_table(backend, table=COURSE_BLOCKS):
    from clickhouse_outbox.clickhouse.schema import create_table_sql

    backend.command(create_table_sql(table, backend.database, backend.server_info()))


def select_blocks(backend, dump_id=None):
    where = f" WHERE dump_id = toUUID('{dump_id}')" if dump_id else ""
    table = qualified_name(backend.database, "course_blocks")
    columns = "display_name, xblock_data_json, `order`, location"
    return backend.query(f"SELECT {columns} FROM {table}{where} ORDER BY `order`")
