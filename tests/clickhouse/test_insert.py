"""
Inserting rows: what goes in comes out byte for byte, on the old server and on chdb.
"""

import base64
import gzip
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickhouse_outbox.clickhouse.backends import build_backend
from clickhouse_outbox.clickhouse.backends.base import insert_statement, qualified_name
from clickhouse_outbox.clickhouse.errors import ClickHouseRejected
from clickhouse_outbox.clickhouse.tables import COURSE_BLOCKS, COURSE_RELATIONSHIPS
from tests.proxy import FaultProxy

from .conftest import block_row, create_table, encode_rows, new_dump_id, select_blocks

AWKWARD_STRINGS = [
    "plain",
    "",
    "it's a \"quoted\" `name`",
    "tab\there",
    "new\nline and\r\ncarriage return",
    "back\\slash \\n not a newline \\\\",
    "emoji 😀🎓👩🏽‍🏫 and flags 🇺🇦",
    "RTL: مرحبا بالعالم — עברית \u202eevil\u202c",
    "NUL \x00 in the middle",
    "controls \x01\x07\x1b\x1f\x7f",
    "line separator \u2028 paragraph \u2029 BOM \ufeff",
    "combining e\u0301 and zero-width\u200b joiner\u200d",
    '{"looks": "like JSON", "n": [1, 2]}',
    "x" * 10_000,
    "mixé ünïcode ✓ " * 700,
]


def test_awkward_strings_round_trip_byte_for_byte(backend):
    create_table(backend)
    rows = [
        block_row(order, display_name=text, xblock_data_json=json.dumps({"display": text}, ensure_ascii=False))
        for order, text in enumerate(AWKWARD_STRINGS, start=1)
    ]

    result = backend.insert(COURSE_BLOCKS, encode_rows(rows), rows=len(rows))

    stored = select_blocks(backend)
    assert [row["display_name"] for row in stored] == AWKWARD_STRINGS
    assert [json.loads(row["xblock_data_json"])["display"] for row in stored] == AWKWARD_STRINGS
    assert [row["display_name"].encode("utf-8") for row in stored] == [text.encode("utf-8") for text in AWKWARD_STRINGS]
    assert result.written_rows in (None, len(rows))


# Any text a course author could type (no lone surrogates: they cannot be UTF-8 at all).
author_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(author_text, min_size=1, max_size=12))
def test_any_text_round_trips(backend, names):
    create_table(backend)  # IF NOT EXISTS: the examples share the test's database
    dump_id = new_dump_id()
    rows = [block_row(order, display_name=name, dump_id=dump_id) for order, name in enumerate(names, start=1)]

    backend.insert(COURSE_BLOCKS, encode_rows(rows), rows=len(rows))

    assert [row["display_name"] for row in select_blocks(backend, dump_id)] == names


def test_explicit_column_list_fills_a_table_in_another_column_order(backend):
    """The table's columns are in reverse order: values must still land by name, not position."""
    columns = ", ".join(f"`{column.name}` {column.type}" for column in reversed(COURSE_RELATIONSHIPS.columns))
    backend.command(
        f"CREATE TABLE {qualified_name(backend.database, 'course_relationships')} ({columns}) "
        "ENGINE = MergeTree ORDER BY `course_key`"
    )
    row = {
        "course_key": "course-v1:A+B+C",
        "parent_location": "block-v1:A+B+C+type@course+block@course",
        "child_location": "block-v1:A+B+C+type@chapter+block@ch1",
        "order": 7,
        "dump_id": "11111111-2222-4333-8444-555555555555",
        "time_last_dumped": "2025-01-01 00:00:01",
    }

    backend.insert(COURSE_RELATIONSHIPS, encode_rows([row]), rows=1)

    stored = backend.query(
        f"SELECT course_key, parent_location, child_location, `order`, toString(dump_id) AS dump_id, "
        f"time_last_dumped FROM {qualified_name(backend.database, 'course_relationships')}"
    )
    assert stored == [row]
    assert insert_statement("db", COURSE_RELATIONSHIPS) == (
        "INSERT INTO `db`.`course_relationships` (`course_key`, `parent_location`, `child_location`, `order`, "
        "`dump_id`, `time_last_dumped`) FORMAT JSONEachRow"
    )


def test_a_rejected_row_is_permanent_with_its_code(backend):
    """The bad UUID ends the payload: 18.16 reads 36 bytes for a UUID, see the next test."""
    create_table(backend)
    bad = block_row(3)
    del bad["dump_id"]
    bad["dump_id"] = "not-a-uuid"
    rows = [block_row(1), block_row(2), bad]

    with pytest.raises(ClickHouseRejected) as caught:
        backend.insert(COURSE_BLOCKS, encode_rows(rows), rows=3)

    assert caught.value.code == 376  # CANNOT_PARSE_UUID
    assert caught.value.retryable is False
    assert "uuid" in str(caught.value).lower()
    assert select_blocks(backend) == []


def test_a_rejected_row_mid_batch_is_permanent_too(backend):
    """
    18.16 reads a UUID as 36 bytes whatever the quotes say, so a short bad UUID before the
    last row swallows the next row's text and fails as CANNOT_PARSE_INPUT_ASSERTION_FAILED (27);
    a current engine says CANNOT_PARSE_UUID (376). Both are data errors.
    """
    create_table(backend)
    rows = [block_row(1), block_row(2, dump_id="not-a-uuid"), block_row(3)]

    with pytest.raises(ClickHouseRejected) as caught:
        backend.insert(COURSE_BLOCKS, encode_rows(rows), rows=3)

    assert caught.value.code == (27 if backend.server_info().version < (20,) else 376)
    assert caught.value.retryable is False
    assert select_blocks(backend) == []


def insert_through_a_proxy(http_backend, clickhouse_server_config, payload, rows):
    """Insert `payload` into course_blocks via a proxy: (the insert's result, the INSERT requests it saw)."""
    with FaultProxy(clickhouse_server_config["url"]) as proxy:
        backend = build_backend(dict(clickhouse_server_config, url=proxy.url, database=http_backend.database))
        result = backend.insert(COURSE_BLOCKS, payload, rows=rows, dedup_token="batch-1")
        backend.close()
    return result, [request for request in proxy.requests() if request.params.get("query", "").startswith("INSERT")]


def test_the_payload_is_gzip_on_the_wire(http_backend, clickhouse_server_config):
    create_table(http_backend)
    rows = [block_row(order, display_name=f"Unit {order} ✓") for order in range(1, 501)]
    payload = encode_rows(rows)

    _, inserts = insert_through_a_proxy(http_backend, clickhouse_server_config, payload, rows=len(rows))

    assert len(inserts) == 1
    method, params, headers, body = inserts[0]
    assert method == "POST"
    assert headers["content-encoding"] == "gzip"
    assert body[:2] == b"\x1f\x8b"
    assert gzip.decompress(body) == payload
    assert len(body) * 5 < len(payload)
    assert params["query"] == insert_statement(http_backend.database, COURSE_BLOCKS)
    assert params["database"] == http_backend.database
    assert params["wait_end_of_query"] == "1"
    assert not [name for name in params if name.startswith("input_format_allow_errors")]
    # The credentials in basic authentication (UTF-8), never in the query string.
    credentials = f"{clickhouse_server_config['username']}:{clickhouse_server_config['password']}".encode()
    assert headers["authorization"] == f"Basic {base64.b64encode(credentials).decode()}"
    assert "x-clickhouse-key" not in headers
    assert clickhouse_server_config["password"] not in json.dumps(params)
    assert len(select_blocks(http_backend)) == 500


def test_old_server_gets_no_settings_it_does_not_know(http_backend, clickhouse_server_config):
    """18.16 has neither insert_deduplication_token (22.2) nor async_insert (21.11): sending them would fail."""
    create_table(http_backend)
    info = http_backend.server_info()
    assert info.version < (21, 11)
    assert not info.supports_deduplication_token

    result, inserts = insert_through_a_proxy(http_backend, clickhouse_server_config, encode_rows([block_row(1)]), rows=1)

    params = inserts[0].params
    assert "insert_deduplication_token" not in params
    assert "async_insert" not in params
    assert result.written_rows is None  # 18.16 does not say
    assert [row["order"] for row in select_blocks(http_backend)] == [1]


def test_chdb_dedup_token_makes_a_resent_batch_a_no_op(chdb_backend):
    create_table(chdb_backend)
    first = encode_rows([block_row(1), block_row(2)])
    second = encode_rows([block_row(3)])

    assert chdb_backend.insert(COURSE_BLOCKS, first, rows=2, dedup_token="dump-a:0").written_rows == 2
    chdb_backend.insert(COURSE_BLOCKS, first, rows=2, dedup_token="dump-a:0")
    chdb_backend.insert(COURSE_BLOCKS, second, rows=1, dedup_token="dump-a:1")
    chdb_backend.insert(COURSE_BLOCKS, second, rows=1, dedup_token="dump-a:1")

    assert [row["order"] for row in select_blocks(chdb_backend)] == [1, 2, 3]


def test_chdb_same_rows_with_another_token_are_written_again(chdb_backend):
    create_table(chdb_backend)
    payload = encode_rows([block_row(1)])

    chdb_backend.insert(COURSE_BLOCKS, payload, rows=1, dedup_token="dump-a:0")
    chdb_backend.insert(COURSE_BLOCKS, payload, rows=1, dedup_token="dump-b:0")

    assert [row["order"] for row in select_blocks(chdb_backend)] == [1, 1]


def test_chdb_reports_written_rows_and_settings_it_supports(chdb_backend):
    info = chdb_backend.server_info()
    assert info.supports_deduplication_token and info.supports_async_insert_setting and info.supports_bool
    create_table(chdb_backend)

    result = chdb_backend.insert(COURSE_BLOCKS, encode_rows([block_row(n) for n in range(1, 6)]), rows=5)

    assert result.written_rows == 5


def test_chdb_rejects_a_payload_that_is_not_utf8(chdb_backend):
    create_table(chdb_backend)
    payload = encode_rows([block_row(1, display_name="X")]).replace(b'"X"', b'"\xff"')

    with pytest.raises(ClickHouseRejected) as caught:
        chdb_backend.insert(COURSE_BLOCKS, payload, rows=1)

    assert caught.value.retryable is False
