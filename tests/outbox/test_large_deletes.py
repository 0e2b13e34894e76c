"""
A batch of deletes whose values make one `ALTER TABLE … DELETE WHERE id IN (…)` longer than
ClickHouse's max_query_size (262,144 bytes) is sent as several mutations, and deletes exactly
what the one statement would have: on the real 18.16 server and on chdb.
"""

import time

import pytest
from django.db import transaction

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.clickhouse.tables import TAG
from clickhouse_outbox.models import Batch, Kind
from clickhouse_outbox.outbox import deletes
from clickhouse_outbox.outbox.drain import drain
from tests.clickhouse.conftest import encode_rows, new_dump_id

pytestmark = pytest.mark.django_db


def wait_for_mutations(backend, timeout=60):
    deadline = time.monotonic() + timeout
    sql = f"SELECT count() AS n FROM system.mutations WHERE database = '{backend.database}' AND is_done = 0"
    while int(backend.query(sql)[0]["n"]):
        assert time.monotonic() < deadline, "a ClickHouse mutation did not finish"
        time.sleep(0.05)


def tag_row(tag_id):
    return {"id": tag_id, "taxonomy": 1, "parent": 0, "value": f"tag {tag_id}", "external_id": "", "lineage": "",
            "dump_id": new_dump_id(), "time_last_dumped": "2026-01-01 00:00:00"}


def test_a_batch_of_deletes_longer_than_one_statement_deletes_exactly_its_values(clickhouse):
    kept = [5, 1_500_000_000]
    gone = [7, 1_000_012_345, 2_000_000_000]
    clickhouse.insert(TAG, encode_rows([tag_row(tag_id) for tag_id in kept + gone]), rows=len(kept + gone))
    # Three deleted subjects, 12,000 ids each (~11 bytes with its separator): one batch, ~400 KB of values.
    with transaction.atomic():
        for part in range(3):
            ids = [1_000_000_000 + part * 12_000 + n for n in range(12_000)]
            ids.append(gone[part] if part != 1 else ids[0])
            deletes.queue_deletes("tag", f"bulk-{part}", [(TAG.name, "id", ids)], reason="deleted")
    deletes.queue_deletes("tag", "small", [(TAG.name, "id", [gone[0]])], reason="deleted")

    result = drain()

    assert result.ok, result.errors
    assert Batch.objects.filter(kind=Kind.DELETE).count() == 1  # every value in one batch
    assert result.deletes_sent == 3 * 12_001 + 1
    wait_for_mutations(clickhouse)
    left = clickhouse.query(f"SELECT id FROM {qualified_name(clickhouse.database, TAG.name)} ORDER BY id")
    assert [int(row["id"]) for row in left] == kept
