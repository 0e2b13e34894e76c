"""
Statements with a list of values are sized by bytes: ClickHouse parses at most
max_query_size bytes of a query (262,144 by default, on 18.16 and on the current engine)
and answers a longer one with a syntax error (code 62). A delete of many values, or a
verification's query over many subjects with long keys, becomes several statements, and
their results are the one statement's.
"""

import json
import time

import pytest

from clickhouse_outbox.clickhouse.backends.base import (
    MAX_STATEMENT_BYTES,
    by_bytes,
    delete_statements,
    qualified_name,
    utf8_length,
)
from clickhouse_outbox.clickhouse.tables import COURSE_BLOCKS, TAG
from clickhouse_outbox.reconcile.held import held_rows, rows_by_subject

from .conftest import block_row, create_table, encode_rows, new_dump_id

MAX_QUERY_SIZE = 262_144  # ClickHouse's default


def long_key(number):
    """A course key of ~140 bytes (a long organisation, course and run), with a non-ASCII letter."""
    return f"course-v1:Université-{'Organisation' * 4}+{'LongCourseName' * 5}{number:06d}+Run2026"


def wait_for_mutations(backend, timeout=60):
    """18.16 applies a delete in the background (chdb waits): wait until it has."""
    deadline = time.monotonic() + timeout
    sql = f"SELECT count() AS n FROM system.mutations WHERE database = '{backend.database}' AND is_done = 0"
    while int(backend.query(sql)[0]["n"]):
        assert time.monotonic() < deadline, "a ClickHouse mutation did not finish"
        time.sleep(0.05)


def test_by_bytes_keeps_the_order_and_fits_each_part():
    items = [f"'{'é' * (n % 50)}{n}'" for n in range(10_000)]

    parts = list(by_bytes(items, 5_000))

    assert [item for part in parts for item in part] == items
    assert all(utf8_length(", ".join(part)) <= 5_000 for part in parts)
    assert len(parts) > 1
    assert list(by_bytes(["x" * 100], 10)) == [["x" * 100]]  # too large alone: a part of its own


def test_delete_statements_fit_and_name_every_value_once():
    wanted = {"location": [long_key(n) for n in range(5_000)], "id": list(range(2_000_000_000, 2_000_020_000))}

    statements = delete_statements("event_sink", COURSE_BLOCKS, wanted, {"mutations_sync": 1})

    assert len(statements) > 2
    assert all(utf8_length(sql) <= MAX_STATEMENT_BYTES for sql in statements)
    assert all(sql.endswith(" SETTINGS mutations_sync = 1") for sql in statements)
    assert sum(sql.count("'course-v1:") for sql in statements) == 5_000
    assert sum(sql.count("2000") for sql in statements) >= 20_000


def test_a_delete_of_more_values_than_one_statement_holds_deletes_exactly_them(backend):
    create_table(backend, TAG)
    kept, gone = 7, [1, 1_000_000_000]
    rows = [{"id": tag_id, "taxonomy": 1, "parent": 0, "value": f"tag {tag_id}", "external_id": "", "lineage": "",
             "dump_id": new_dump_id(), "time_last_dumped": "2026-01-01 00:00:00"} for tag_id in (kept, *gone)]
    backend.insert(TAG, encode_rows(rows), rows=len(rows))
    values = [gone[0], *range(1_000_000_001, 1_000_030_000), gone[1]]  # ~360 KB of ids
    assert utf8_length(", ".join(map(str, values))) > MAX_QUERY_SIZE

    backend.delete(TAG, {"id": values})
    wait_for_mutations(backend)

    left = backend.query(f"SELECT id FROM {qualified_name(backend.database, TAG.name)} ORDER BY id")
    assert [int(row["id"]) for row in left] == [kept]


@pytest.fixture
def blocks_of_long_keys(backend):
    """Rows of 3 courses with long keys in course_blocks: {course_key: (dump_id, rows)}."""
    create_table(backend)
    held = {}
    for number, count in ((5, 2), (777, 3), (2_999, 1)):
        key, dump_id = long_key(number), new_dump_id()
        rows = [block_row(order, dump_id=dump_id, course_key=key) for order in range(1, count + 1)]
        backend.insert(COURSE_BLOCKS, encode_rows(rows), rows=count)
        held[key] = (dump_id, count)
    return held


def test_what_is_held_for_more_subjects_than_one_query_holds(backend, blocks_of_long_keys):
    subjects = [long_key(number) for number in range(3_000)]  # ~190 bytes each with its dump_id
    dump_ids = [blocks_of_long_keys[key][0] if key in blocks_of_long_keys else new_dump_id() for key in subjects]
    assert sum(utf8_length(key) + utf8_length(dump_id) for key, dump_id in zip(subjects, dump_ids)) > MAX_QUERY_SIZE

    found = held_rows(backend, COURSE_BLOCKS, dump_ids, "course_key", subjects)

    assert found == {dump_id: (count, count) for dump_id, count in blocks_of_long_keys.values()}
    assert rows_by_subject(backend, COURSE_BLOCKS, "course_key", subjects) == {
        key: count for key, (_, count) in blocks_of_long_keys.items()}


def test_the_parts_of_a_split_query_add_up_to_the_one_query(backend, blocks_of_long_keys):
    """The same question asked in one query (it fits) and in parts of ~1 KB: the same answer."""
    subjects = [long_key(number) for number in (1, 5, 6, 777, 2_999, 3_000)]
    dump_ids = [blocks_of_long_keys[key][0] if key in blocks_of_long_keys else new_dump_id() for key in subjects]

    whole = held_rows(backend, COURSE_BLOCKS, dump_ids, "course_key", subjects)
    parts = held_rows(backend, COURSE_BLOCKS, dump_ids, "course_key", subjects, max_bytes=1_000)

    assert whole == parts and len(whole) == 3
    assert rows_by_subject(backend, COURSE_BLOCKS, "course_key", subjects) == rows_by_subject(
        backend, COURSE_BLOCKS, "course_key", subjects, max_bytes=800)
    assert json.dumps(whole)  # plain numbers and strings
