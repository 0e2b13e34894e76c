"""
`clickhouse_outbox_schema --enable-dedup`: existing tables made to store a resent batch once.

Shown on the consumer's own tables: the `event_sink` DDL of tutor-contrib-aspects and the
query of aspects-dbt's `dim_most_recent_course_blocks` (both copied, with their sources, in
tests/clickhouse/aspects/), on chdb (current ClickHouse). A batch goes through the plugin's
send path twice with the same deduplication token, as a drainer resends it after a lost
answer.
"""

import io
import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from clickhouse_outbox.clickhouse.backends.base import ServerInfo, qualified_name, quote_identifier
from clickhouse_outbox.clickhouse.dedup import (
    ENABLE,
    HAS_WINDOW,
    NOT_MERGE_TREE,
    OLD_SERVER,
    FOLDS,
    REPLICATED,
    alter_sql,
    deduplication_window,
    table_action,
)
from clickhouse_outbox.clickhouse.schema import create_schema
from clickhouse_outbox.clickhouse.tables import (
    COURSE_BLOCKS,
    COURSE_OVERVIEWS,
    COURSE_RELATIONSHIPS,
    all_tables,
)
from clickhouse_outbox.outbox.claim import claim_batch
from clickhouse_outbox.outbox.send import dedup_token, send_batch
from tests.factories import CourseSnapshotFactory

from .conftest import backend_config

ASPECTS = Path(__file__).parent / "aspects"
PROJECT_DIR = Path(__file__).resolve().parents[2]
BLOCKS = 30
SET = "set non_replicated_deduplication_window = 1000; a resent batch is now stored once (no data was changed)"
# The tables of the course_structure producer, the only ones event_sink_course_tables.sql creates.
COURSE_TABLES = [COURSE_OVERVIEWS, COURSE_BLOCKS, COURSE_RELATIONSHIPS]
COURSES = ("--producer", "course_structure")


def create_aspects_tables(backend):
    """The three tables as tutor-contrib-aspects' migration creates them on one node."""
    sql = (ASPECTS / "event_sink_course_tables.sql").read_text()
    sql = re.sub(r"^--.*$", "", sql, flags=re.MULTILINE).replace(
        "{{ ASPECTS_EVENT_SINK_DATABASE }}", quote_identifier(backend.database)
    )
    for statement in filter(str.strip, sql.split(";")):
        backend.command(statement)


def most_recent_course_blocks(backend):
    """The rows of aspects-dbt's dim_most_recent_course_blocks query on `backend`'s course_blocks."""
    sql = (ASPECTS / "dim_most_recent_course_blocks.sql").read_text()
    sql = re.sub(r"^--.*$", "", sql, flags=re.MULTILINE)
    sql = re.sub(r"^\{\{\s*config\(.*?^\}\}$", "", sql, flags=re.DOTALL | re.MULTILINE)  # ends at its own line
    sql, sources = re.subn(
        r"""\{\{\s*source\("event_sink",\s*"course_blocks"\)\s*\}\}""", qualified_name(backend.database, "course_blocks"), sql
    )
    assert sources == 2 and "{{" not in sql, sql
    return backend.query(sql)


def blocks_per_location(rows):
    return Counter(row["location"] for row in rows)


def stored_blocks(backend, course_key=None):
    where = f" WHERE course_key = '{course_key}'" if course_key else ""
    return backend.query(f"SELECT location FROM {qualified_name(backend.database, 'course_blocks')}{where}")


def engines_full(backend):
    rows = backend.query(f"SELECT name, engine_full FROM system.tables WHERE database = '{backend.database}'")
    return {row["name"]: row["engine_full"] for row in rows}


def queue_and_claim(course_blocks=BLOCKS):
    """A course snapshot queued as a publish queues it, and its course_blocks batch claimed as a drainer claims it."""
    snapshot = CourseSnapshotFactory(course__blocks=course_blocks)
    owner = uuid.uuid4()
    batches = []
    while (batch := claim_batch(owner)) is not None:
        batches.append(batch)
    (blocks,) = [batch for batch in batches if batch.table == COURSE_BLOCKS.name]
    return snapshot, blocks, batches


def send_then_resend(batch, backend):
    """The batch sent, its answer lost, and sent again: the same bytes under the same token."""
    return send_batch(batch, backend), send_batch(batch, backend)


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("clickhouse_outbox_schema", *args, stdout=out, stderr=err)
    return out.getvalue()


@pytest.fixture
def aspects_clickhouse(chdb_backend, settings):
    """chdb with the event_sink course tables as Aspects creates them; the plugin is pointed at it."""
    create_aspects_tables(chdb_backend)
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = backend_config(chdb_backend, None)
    return chdb_backend


@pytest.mark.chdb
@pytest.mark.django_db
def test_aspects_tables_store_a_resent_batch_twice_and_the_model_returns_every_block_twice(aspects_clickhouse):
    backend = aspects_clickhouse
    assert all(deduplication_window(engine) == 0 for engine in engines_full(backend).values())
    snapshot, blocks, batches = queue_and_claim()
    for batch in batches:
        send_batch(batch, backend)
    assert len(stored_blocks(backend)) == blocks.row_count

    send_batch(blocks, backend)  # resent after a lost answer: same token, same bytes

    assert dedup_token(blocks) == f"clickhouse_outbox-{blocks.token}"
    assert backend.server_info().supports_deduplication_token  # the token was sent, and made no difference
    assert len(stored_blocks(backend)) == 2 * blocks.row_count
    model = most_recent_course_blocks(backend)
    assert len(model) == 2 * blocks.row_count
    assert set(blocks_per_location(model).values()) == {2}
    assert len(blocks_per_location(model)) == blocks.row_count
    assert {row["dump_id"] for row in model} == {str(snapshot.dump_id)}


@pytest.mark.chdb
@pytest.mark.django_db
def test_after_enable_dedup_a_resent_batch_is_stored_once_and_the_model_returns_each_block_once(aspects_clickhouse):
    backend = aspects_clickhouse
    before, blocks_before, batches = queue_and_claim()
    send_then_resend(blocks_before, backend)
    assert len(stored_blocks(backend)) == 2 * blocks_before.row_count

    output = run("--enable-dedup", *COURSES)

    assert output.splitlines() == [
        f"{qualified_name(backend.database, table.name)} (MergeTree): {SET}" for table in COURSE_TABLES
    ]
    assert all(deduplication_window(engine) == 1000 for engine in engines_full(backend).values())
    assert len(stored_blocks(backend)) == 2 * blocks_before.row_count  # no data touched: old copies stay

    after, blocks, _ = queue_and_claim()
    send_then_resend(blocks, backend)

    course_key = after.subject
    assert len(stored_blocks(backend, course_key)) == blocks.row_count
    model = [row for row in most_recent_course_blocks(backend) if row["course_key"] == course_key]
    assert len(model) == blocks.row_count
    assert set(blocks_per_location(model).values()) == {1}
    assert {row["dump_id"] for row in model} == {str(after.dump_id)}
    earlier = [row for row in most_recent_course_blocks(backend) if row["course_key"] == before.subject]
    assert set(blocks_per_location(earlier).values()) == {2}  # stored twice before the setting: still twice


@pytest.mark.chdb
def test_enable_dedup_again_has_nothing_to_do(aspects_clickhouse):
    run("--enable-dedup", *COURSES)

    output = run("--enable-dedup", *COURSES)

    assert output.splitlines() == [
        f"{qualified_name(aspects_clickhouse.database, table.name)} (MergeTree) already has a deduplication window "
        "(1000 blocks); nothing to do"
        for table in COURSE_TABLES
    ]


@pytest.mark.chdb
def test_tables_created_by_the_plugin_need_nothing(chdb_backend, settings):
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = backend_config(chdb_backend, None)
    create_schema(chdb_backend)
    ddl = engines_full(chdb_backend)

    output = run("--enable-dedup")

    assert [line.endswith("already has a deduplication window (1000 blocks); nothing to do") for line in
            output.splitlines()] == [True] * len(all_tables())
    assert engines_full(chdb_backend) == ddl


@pytest.mark.chdb
def test_a_missing_table_is_an_error_after_the_others_are_done(aspects_clickhouse):
    backend = aspects_clickhouse
    backend.command(f"DROP TABLE {qualified_name(backend.database, 'course_relationships')}")
    out = io.StringIO()

    with pytest.raises(CommandError) as caught:
        call_command("clickhouse_outbox_schema", "--enable-dedup", *COURSES, stdout=out, stderr=io.StringIO())

    assert len(out.getvalue().splitlines()) == 2 and SET in out.getvalue()
    assert str(caught.value) == (
        "Deduplication could not be enabled everywhere:\n"
        f"  - Table {qualified_name(backend.database, 'course_relationships')} does not exist "
        "(run: manage.py clickhouse_outbox_schema --create)"
    )


@pytest.mark.chdb
def test_a_failed_alter_names_the_table_and_the_servers_error(aspects_clickhouse):
    """chdb has no cluster at all, so ON CLUSTER fails for real: the error is reported, not swallowed."""
    with pytest.raises(CommandError) as caught:
        run("--enable-dedup", "--cluster", "no_such_cluster", *COURSES)

    message = str(caught.value)
    for table in COURSE_TABLES:
        name = qualified_name(aspects_clickhouse.database, table.name)
        assert (
            f"Could not set non_replicated_deduplication_window on {name} ON CLUSTER `no_such_cluster`: chdb refused"
        ) in message
    assert "Code: " in message  # the server's own error
    assert all(deduplication_window(engine) == 0 for engine in engines_full(aspects_clickhouse).values())


@pytest.mark.clickhouse_server
def test_the_old_server_cannot_and_says_so(http_backend, clickhouse_server_config, settings):
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = backend_config(http_backend, clickhouse_server_config)
    create_schema(http_backend)  # (Replacing)MergeTree without a window: all 18.16 can have
    ddl = engines_full(http_backend)
    version = http_backend.server_info().version_string

    with pytest.raises(CommandError) as caught:
        run("--enable-dedup")

    message = str(caught.value)
    assert message.startswith("Deduplication could not be enabled everywhere:\n")
    for table in all_tables():
        name = qualified_name(http_backend.database, table.name)
        if table.engine == "ReplacingMergeTree":  # not a problem: it folds a resent row at its next merge
            assert name not in message
            continue
        assert (
            f"{name} ({table.engine}) keeps no deduplication window, and "
            f"cannot on this server: ClickHouse {version} has no non_replicated_deduplication_window (it came in 21.5)"
        ) in message
    assert "Upgrade ClickHouse to 21.5 or later, or use replicated tables" in message
    assert engines_full(http_backend) == ddl


@pytest.mark.clickhouse_server
def test_from_the_shell_the_old_server_exits_1(http_backend, clickhouse_server_config):
    create_schema(http_backend)

    result = subprocess.run(  # noqa: S603 (our own manage.py)
        [sys.executable, "manage.py", "clickhouse_outbox_schema", "--enable-dedup"],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120, check=False,
        env={
            **os.environ,
            "PYTHONPATH": str(PROJECT_DIR),
            "CLICKHOUSE_URL": clickhouse_server_config["url"],
            "CLICKHOUSE_USERNAME": clickhouse_server_config["username"],
            "CLICKHOUSE_PASSWORD": clickhouse_server_config["password"],
            "CLICKHOUSE_DATABASE": http_backend.database,
        },
    )

    assert result.returncode == 1, result.stderr
    plain = [table for table in all_tables() if table.engine == "MergeTree"]
    replacing = [table for table in all_tables() if table.engine == "ReplacingMergeTree"]
    assert result.stdout.count("folds a resent row into the first at its next merge") == len(replacing)
    assert "CommandError: Deduplication could not be enabled everywhere:" in result.stderr
    assert result.stderr.count("keeps no deduplication window, and cannot on this server") == len(plain)
    assert "Traceback" not in result.stderr
    assert clickhouse_server_config["password"] not in result.stderr + result.stdout


@pytest.mark.clickhouse_cluster
def test_replicated_tables_on_the_old_cluster_need_nothing(cluster_backends, cluster_config, settings):
    """Replicated tables deduplicate inserted blocks on any version, 18.16 included: nothing to alter."""
    from tests.clickhouse_fixtures import replica_backend_config

    first = cluster_backends[0]
    create_schema(first, cluster=cluster_config["cluster"])
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = replica_backend_config(cluster_config, 0, first.database)
    ddl = engines_full(first)

    output = run("--enable-dedup", "--cluster", cluster_config["cluster"])

    # In the command's order (producer by producer), so compared sorted.
    assert sorted(output.splitlines()) == sorted(
        f"{qualified_name(first.database, table.name)} (Replicated{table.engine}) is replicated and deduplicates "
        "resent batches already; nothing to do"
        for table in all_tables()
    )
    assert engines_full(first) == ddl


CURRENT = ServerInfo(version=(24, 8, 4, 13))
OLD = ServerInfo(version=(18, 16, 1))
PLAIN = "MergeTree ORDER BY (org, course_key) SETTINGS index_granularity = 8192"
WITH_WINDOW = "MergeTree ORDER BY (org, course_key) SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 100"


@pytest.mark.parametrize(
    ("engine", "engine_full", "server", "action"),
    [
        ("MergeTree", PLAIN, CURRENT, ENABLE),
        ("ReplacingMergeTree", PLAIN.replace("MergeTree", "ReplacingMergeTree", 1), CURRENT, ENABLE),
        ("MergeTree", PLAIN + ", non_replicated_deduplication_window = 0", CURRENT, ENABLE),
        ("MergeTree", WITH_WINDOW, CURRENT, HAS_WINDOW),
        ("MergeTree", PLAIN, OLD, OLD_SERVER),
        ("ReplacingMergeTree", PLAIN.replace("MergeTree", "ReplacingMergeTree", 1), OLD, FOLDS),
        ("ReplicatedMergeTree", "ReplicatedMergeTree('/clickhouse/tables/{shard}/t', '{replica}')", OLD, REPLICATED),
        ("ReplicatedReplacingMergeTree", "ReplicatedReplacingMergeTree('/t', '{replica}')", CURRENT, REPLICATED),
        ("SharedMergeTree", "SharedMergeTree('/t', '{replica}')", CURRENT, REPLICATED),
        ("Log", "Log", CURRENT, NOT_MERGE_TREE),
        ("Distributed", "Distributed('main', 'event_sink', 'course_blocks')", CURRENT, NOT_MERGE_TREE),
    ],
)
def test_table_action(engine, engine_full, server, action):
    assert table_action(engine, engine_full, server) == action


def test_alter_on_a_cluster():
    assert alter_sql("event_sink", "course_blocks", "main") == (
        "ALTER TABLE `event_sink`.`course_blocks` ON CLUSTER `main` MODIFY SETTING non_replicated_deduplication_window = 1000"
    )
    assert " ON CLUSTER" not in alter_sql("event_sink", "course_blocks")
