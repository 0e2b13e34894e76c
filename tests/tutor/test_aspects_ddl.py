"""
The contract checked against the consumer's real DDL: the `event_sink` tables the outbox
writes, as tutor-contrib-aspects' alembic migrations create and change them, read from a
`tutor config save` render (tests/tutor/aspects_migrations.py), replayed on chdb (current
ClickHouse) in the order Aspects runs them. A release of Aspects that changes these tables
fails here.
"""

import json
import re
import shutil
import uuid
from collections import Counter
from datetime import datetime, timezone

import pytest

from clickhouse_outbox.clickhouse.backends.base import GZIP, qualified_name
from clickhouse_outbox.clickhouse.schema import check_schema, deduplication_warnings, table_engines
from clickhouse_outbox.clickhouse.tables import all_tables, get_table
from clickhouse_outbox.serializers.course_structure import serialize_course
from clickhouse_outbox.serializers.encoding import dump_time
from clickhouse_outbox.serializers.payloads import compress
from clickhouse_outbox.sources.olx import SAMPLE_COURSE_DIR, read_olx_export

from .aspects_migrations import (
    COURSE_TABLES,
    JOBS_COMPOSE,
    TABLES,
    VERSIONS,
    UnsupportedMigration,
    read_migrations,
    replayable,
)

# What tutor-contrib-aspects 6.1.0 (requirements/tutor.txt) does to the tables the outbox
# writes. A new Aspects release that touches them changes these lists: read its migrations,
# check the contract still holds, then update them (and the README's list).
TABLE_MIGRATIONS = [
    "0007_event_sink.py",
    "0016_event_sink_user_profile.py",
    "0026_event_sink_external_id.py",
    "0027_partition_event_sink_user_profile.py",
    "0031_add_email_user_profile.py",
    "0036_course_enrollments.py",
    "0039_event_sink_tag_taxonomy.py",
    "0040_user_profile_username.py",
]
TABLE_DDL = [
    ("CREATE", "event_sink.course_overviews"),  # 0007
    ("CREATE", "event_sink.course_blocks"),
    ("CREATE", "event_sink.course_relationships"),
    ("CREATE", "event_sink.user_profile"),  # 0016
    ("CREATE", "event_sink.external_id"),  # 0026, PARTITION BY user_id MOD 100
    # 0027 re-creates user_profile partitioned: renamed away, created again, refilled, the copy dropped.
    ("RENAME", "event_sink.user_profile"),
    ("CREATE", "event_sink.user_profile"),
    ("INSERT", "event_sink.user_profile"),
    ("DROP", "event_sink.old_user_profile"),
    ("ALTER", "event_sink.user_profile"),  # 0031: ADD COLUMN email AFTER name
    ("CREATE", "event_sink.course_enrollment"),  # 0036
    ("CREATE", "event_sink.tag"),  # 0039
    ("CREATE", "event_sink.taxonomy"),
    ("CREATE", "event_sink.object_tag"),
    ("ALTER", "event_sink.user_profile"),  # 0040: ADD COLUMN username AFTER name (so before email)
]
# Dictionaries and a materialized view built on the tables (0028: user_pii_dict, on
# user_profile and external_id); later ones replace them, 0035 and 0037 drop the last (dbt
# builds the readers since), so none survives.
READER_MIGRATIONS = [
    "0010_course_dictionaries.py",
    "0014_add_course_names_fields.py",
    "0015_add_course_key_blocks.py",
    "0017_add_graded_course_block_names.py",
    "0023_extend_display_names.py",
    "0028_user_pii.py",
]


def replay(backend, migrations):
    """The tables' DDL, in order, on a store that has only the database (as Aspects' init job leaves it)."""
    with backend.session():
        for statement in migrations.table_ddl:
            backend.command(replayable(statement))


def test_the_followed_tables_are_the_ones_the_outbox_writes():
    assert sorted(TABLES) == sorted(table.name for table in all_tables())
    assert set(COURSE_TABLES) < set(TABLES)


@pytest.mark.slow  # renders a Tutor env
def test_the_replayed_migrations_are_the_known_ones(aspects_env, aspects):
    assert aspects.database == "event_sink"
    assert aspects.revisions[0] == "0001_get_org_from_course_url.py"
    assert len(aspects.revisions) == len(list((aspects_env / VERSIONS).glob("0*.py")))
    assert aspects.migrations_of("table") == TABLE_MIGRATIONS
    assert [(s.verb.upper(), s.target) for s in aspects.table_ddl] == TABLE_DDL
    assert aspects.migrations_of("reader") == READER_MIGRATIONS
    assert aspects.surviving_readers() == {}
    # Rendered for one server (Aspects' default, CLICKHOUSE_CLUSTER_NAME empty): nothing to translate,
    # and each table is created with its single-node engine.
    for statement in aspects.table_ddl:
        assert "ON CLUSTER" not in statement.compact.upper()
        if statement.verb.upper() == "CREATE":
            (engine,) = re.findall(r"\bengine\s*=?\s*(\w+)", statement.compact, flags=re.IGNORECASE)
            assert engine == get_table(statement.target.split(".")[1]).engine, statement.compact


@pytest.mark.slow  # renders a Tutor env
@pytest.mark.chdb
def test_aspects_tables_pass_the_schema_check_except_for_the_deduplication_window(aspects, chdb_backend):
    replay(chdb_backend, aspects)

    assert table_engines(chdb_backend) == {table.name: table.engine for table in all_tables()}
    assert check_schema(chdb_backend) == []
    # The one known difference: Aspects' plain MergeTree tables keep no deduplication window
    # (README: --enable-dedup). Its ReplacingMergeTree tables are read FINAL or through a
    # dictionary, where a resent row is folded into the first: not warned about.
    warnings = sorted(deduplication_warnings(chdb_backend))
    plain = sorted(table.name for table in all_tables() if table.engine == "MergeTree")
    assert plain == ["course_blocks", "course_enrollment", "course_overviews", "course_relationships"]
    assert len(warnings) == len(plain)
    for name, warning in zip(plain, warnings, strict=True):
        assert warning.startswith(f"Table {qualified_name('event_sink', name)} keeps no deduplication window")


@pytest.mark.slow  # renders a Tutor env
@pytest.mark.chdb
def test_aspects_tables_have_our_sort_keys_and_partitions(aspects, chdb_backend):
    """Not part of --check (a different key changes no row that is written), but our DDL copies Aspects'."""
    replay(chdb_backend, aspects)

    rows = chdb_backend.query(
        "SELECT name, sorting_key, partition_key FROM system.tables WHERE database = 'event_sink'"
    )
    keys = {row["name"]: (row["sorting_key"], row["partition_key"]) for row in rows}
    assert keys == {
        table.name: (", ".join(table.order_by), table.partition_by) for table in all_tables()
    }


@pytest.mark.slow  # renders a Tutor env
@pytest.mark.chdb
def test_the_sample_course_lands_in_aspects_tables_row_for_row(aspects, chdb_backend):
    replay(chdb_backend, aspects)
    now = datetime.now(timezone.utc)
    serialized = serialize_course(
        read_olx_export(SAMPLE_COURSE_DIR), dump_id=uuid.uuid4(), time_last_dumped=dump_time(now), snapshot_time=now
    )
    assert set(serialized) == set(COURSE_TABLES)

    for name, lines in serialized.items():
        table = get_table(name)
        payload = compress(b"".join(lines))  # as the outbox stores an entry, and the drain sends it
        result = chdb_backend.insert(table, payload, rows=len(lines), encoding=GZIP)
        assert result.written_rows == len(lines)

        stored = chdb_backend.query(f"SELECT * FROM {qualified_name(chdb_backend.database, name)}")
        sent = [json.loads(line) for line in lines]
        assert len(stored) == len(sent) > 0
        assert all(tuple(row) == table.column_names for row in stored), name  # SELECT *: the contract's columns
        assert Counter(map(canonical, stored)) == Counter(map(canonical, sent)), name


def canonical(row):
    return json.dumps(row, sort_keys=True)


@pytest.mark.slow  # renders a Tutor env
@pytest.mark.chdb
def test_a_new_migration_that_alters_a_course_table_is_replayed_and_fails_the_check(aspects_env, tmp_path, chdb_backend):
    """What the next Aspects release would look like: it must show up here, not be skipped."""
    migrations = with_new_migration(
        aspects_env, tmp_path, "0000_new_course_blocks_column.py",
        "ALTER TABLE event_sink.course_blocks ADD COLUMN IF NOT EXISTS block_key String",
    )

    replay(chdb_backend, migrations)
    assert check_schema(chdb_backend) == [
        "`event_sink`.`course_blocks`: column `block_key` (String) is not in the contract; "
        "the older writers insert positionally and do not send it"
    ]


@pytest.mark.slow  # renders a Tutor env
@pytest.mark.chdb
def test_a_new_migration_that_re_creates_a_user_table_is_replayed_and_fails_the_check(aspects_env, tmp_path, chdb_backend):
    """The same for the other tables, through a re-creation like 0027's: the new name is followed too."""
    migrations = with_new_migration(
        aspects_env, tmp_path, "0000_new_external_id_column.py",
        "RENAME TABLE event_sink.external_id TO event_sink.old_external_id;",  # ended as 0031 and 0040 end theirs
        "CREATE TABLE event_sink.external_id (external_user_id UUID, external_id_type String, username String, "
        "user_id Int64, dump_id UUID, time_last_dumped String) ENGINE = ReplacingMergeTree "
        "ORDER BY (external_user_id, time_last_dumped)",
        "INSERT INTO event_sink.external_id SELECT * FROM event_sink.old_external_id",
        "DROP TABLE event_sink.old_external_id",
    )
    assert [(s.verb, s.target) for s in migrations.table_ddl if s.migration.startswith("0000_")] == [
        ("RENAME", "event_sink.external_id"),
        ("CREATE", "event_sink.external_id"),
        ("INSERT", "event_sink.external_id"),
        ("DROP", "event_sink.old_external_id"),
    ]

    replay(chdb_backend, migrations)
    assert set(table_engines(chdb_backend)) == set(TABLES)
    assert check_schema(chdb_backend) == [
        "`event_sink`.`external_id`: column `user_id` is Int64, the contract says Int32"
    ]


def with_new_migration(aspects_env, tmp_path, file_name, *statements):
    """The rendered migrations and one more after the head, which runs `statements`; read as the tests read them."""
    env = tmp_path / "env"
    shutil.copytree(aspects_env / VERSIONS, env / VERSIONS)
    (env / JOBS_COMPOSE).parent.mkdir()
    shutil.copy(aspects_env / JOBS_COMPOSE, env / JOBS_COMPOSE)
    head = read_migrations(env).head
    # Named to sort first: the reader must follow down_revision, not file names.
    (env / VERSIONS / file_name).write_text(
        "from alembic import op\n"
        f"revision = '9999'\ndown_revision = '{head}'\nbranch_labels = None\ndepends_on = None\n"
        "def upgrade():\n" + "".join(f"    op.execute({statement!r})\n" for statement in statements)
    )
    migrations = read_migrations(env)
    assert migrations.revisions[-1] == file_name
    assert migrations.migrations_of("table") == [*TABLE_MIGRATIONS, file_name]
    return migrations


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("op.add_column('course_blocks', None)", "0042_x.py calls op.add_column"),
        ("op.execute('RENAME TABLE event_sink.tmp TO event_sink.course_blocks')", "does not understand"),
        ("op.execute('ALTER TABLE reporting.course_blocks DROP COLUMN org')", "not in event_sink"),
        ("op.execute('INSERT INTO event_sink.course_blocks (org) SELECT org FROM event_sink.old')", "does not understand"),
        ("op.execute('INSERT INTO event_sink.tag SELECT * FROM event_sink.old')", "does not understand"),
        ("op.execute('INSERT INTO event_sink.tag SELECT * FROM event_sink.taxonomy WHERE id > 1')", "does not understand"),
        ("op.execute('RENAME TABLE event_sink.tag TO event_sink.a, event_sink.taxonomy TO event_sink.b')",
         "does not understand"),
        ("op.execute('RENAME TABLE event_sink.user_profile TO reporting.user_profile')", "does not understand"),
        ("op.execute('EXCHANGE TABLES reporting.x AND event_sink.object_tag')", "does not understand"),
        ("op.execute('CREATE VIEW reporting.v AS SELECT * FROM reporting.user_profile')", "does not understand"),
        ("import os\n    op.execute(os.sep)", "imports 'os'"),
        ("op.execute(sa.text('DROP TABLE event_sink.course_blocks'))", "uses sqlalchemy.text"),
    ],
)
def test_what_the_reader_cannot_follow_fails_loudly(tmp_path, body, error):
    env = minimal_env(tmp_path)
    (env / VERSIONS / "0042_x.py").write_text(
        "from alembic import op\nimport sqlalchemy as sa\n"
        "revision = '0042'\ndown_revision = '0001'\nbranch_labels = None\ndepends_on = None\n"
        f"def upgrade():\n    {body}\n"
    )
    with pytest.raises(UnsupportedMigration, match=error):
        read_migrations(env)


def test_a_branch_in_the_revision_graph_fails_loudly(tmp_path):
    env = minimal_env(tmp_path)
    for name in ("0002_a.py", "0002_b.py"):
        (env / VERSIONS / name).write_text(f"revision = '{name}'\ndown_revision = '0001'\ndef upgrade():\n    pass\n")
    with pytest.raises(UnsupportedMigration, match="Several migrations follow revision '0001': 0002_a.py, 0002_b.py"):
        read_migrations(env)


def minimal_env(tmp_path):
    """An env folder with one migration that creates course_blocks, as the rendered one is laid out."""
    env = tmp_path / "env"
    (env / VERSIONS).mkdir(parents=True)
    (env / JOBS_COMPOSE).parent.mkdir(parents=True)
    (env / JOBS_COMPOSE).write_text("      environment:\n        ASPECTS_EVENT_SINK_DATABASE: event_sink\n")
    (env / VERSIONS / "0001_base.py").write_text(
        "from alembic import op\nrevision = '0001'\ndown_revision = None\n"
        "def upgrade():\n    op.execute('CREATE TABLE event_sink.course_blocks (org String) engine = MergeTree ORDER BY org')\n"
    )
    assert read_migrations(env).migrations_of("table") == ["0001_base.py"]
    return env
