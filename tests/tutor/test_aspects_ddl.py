"""
The contract checked against the consumer's real DDL: the `event_sink` course tables as
tutor-contrib-aspects' alembic migrations create them, read from a `tutor config save`
render (tests/tutor/aspects_migrations.py), replayed on chdb (current ClickHouse) in the
order Aspects runs them. A release of Aspects that changes these tables fails here.
"""

import json
import shutil
import uuid
from collections import Counter
from datetime import datetime, timezone

import pytest

from clickhouse_outbox.clickhouse.backends.base import GZIP, qualified_name
from clickhouse_outbox.clickhouse.schema import check_schema, deduplication_warnings, table_engines
from clickhouse_outbox.clickhouse.tables import all_tables, get_table
from clickhouse_outbox.outbox.payloads import compress
from clickhouse_outbox.serializers.course_structure import serialize_course
from clickhouse_outbox.serializers.encoding import dump_time
from clickhouse_outbox.sources.olx import SAMPLE_COURSE_DIR, read_olx_export

from .aspects_migrations import (
    COURSE_TABLES,
    JOBS_COMPOSE,
    VERSIONS,
    UnsupportedMigration,
    read_migrations,
    replayable,
)

# What tutor-contrib-aspects 6.1.0 (requirements/tutor.txt) does to the course tables.
# A new Aspects release that touches them changes these lists: read its migrations, check
# the contract still holds, then update them (and the README's list).
TABLE_MIGRATIONS = ["0007_event_sink.py"]
TABLE_DDL = [
    ("CREATE", "event_sink.course_overviews"),
    ("CREATE", "event_sink.course_blocks"),
    ("CREATE", "event_sink.course_relationships"),
]
# Dictionaries and a materialized view built on the course tables; later ones replace them,
# 0035 and 0037 drop the last (dbt builds the readers since), so none survives.
READER_MIGRATIONS = [
    "0010_course_dictionaries.py",
    "0014_add_course_names_fields.py",
    "0015_add_course_key_blocks.py",
    "0017_add_graded_course_block_names.py",
    "0023_extend_display_names.py",
]


@pytest.fixture
def aspects_env(render_tutor_env):
    """A fresh TUTOR_ROOT with only Aspects enabled, rendered by `tutor config save` (single server)."""
    return render_tutor_env(["aspects"])


@pytest.fixture
def aspects(aspects_env):
    """Every rendered migration's upgrade(), run in revision order and classified."""
    return read_migrations(aspects_env)


@pytest.fixture
def clickhouse_database_name(aspects):
    """The chdb_backend fixture's database: the one the rendered migrations name (event_sink)."""
    return aspects.database


def replay(backend, migrations):
    """The course-table DDL, in order, on a store that has only the database (as Aspects' init job leaves it)."""
    with backend.session():
        for statement in migrations.table_ddl:
            backend.command(replayable(statement))


@pytest.mark.slow  # renders a Tutor env
def test_the_replayed_migrations_are_the_known_ones(aspects_env, aspects):
    assert aspects.database == "event_sink"
    assert aspects.revisions[0] == "0001_get_org_from_course_url.py"
    assert len(aspects.revisions) == len(list((aspects_env / VERSIONS).glob("0*.py")))
    assert aspects.migrations_of("table") == TABLE_MIGRATIONS
    assert [(s.verb.upper(), s.target) for s in aspects.table_ddl] == TABLE_DDL
    assert aspects.migrations_of("reader") == READER_MIGRATIONS
    assert aspects.surviving_readers() == {}
    # Rendered for one server (Aspects' default, CLICKHOUSE_CLUSTER_NAME empty): nothing to translate.
    for statement in aspects.table_ddl:
        assert "ON CLUSTER" not in statement.compact.upper()
        assert "engine = MergeTree" in statement.compact


@pytest.mark.slow  # renders a Tutor env
@pytest.mark.chdb
def test_aspects_tables_pass_the_schema_check_except_for_the_deduplication_window(aspects, chdb_backend):
    replay(chdb_backend, aspects)

    assert set(table_engines(chdb_backend)) == set(COURSE_TABLES)
    assert check_schema(chdb_backend) == []
    # The one known difference: Aspects' plain MergeTree tables keep no deduplication window
    # (README: --enable-dedup).
    warnings = sorted(deduplication_warnings(chdb_backend))
    assert len(warnings) == 3
    for name, warning in zip(sorted(table.name for table in all_tables()), warnings):
        assert warning.startswith(f"Table {qualified_name('event_sink', name)} keeps no deduplication window")


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
    env = tmp_path / "env"
    shutil.copytree(aspects_env / VERSIONS, env / VERSIONS)
    (env / JOBS_COMPOSE).parent.mkdir()
    shutil.copy(aspects_env / JOBS_COMPOSE, env / JOBS_COMPOSE)
    head = read_migrations(env).head
    # Named to sort first: the reader must follow down_revision, not file names.
    (env / VERSIONS / "0000_new_course_blocks_column.py").write_text(
        "from alembic import op\n"
        f"revision = '9999'\ndown_revision = '{head}'\nbranch_labels = None\ndepends_on = None\n"
        "def upgrade():\n"
        "    op.execute('ALTER TABLE event_sink.course_blocks ADD COLUMN IF NOT EXISTS block_key String')\n"
    )
    migrations = read_migrations(env)
    assert migrations.revisions[-1] == "0000_new_course_blocks_column.py"
    assert migrations.migrations_of("table") == [*TABLE_MIGRATIONS, "0000_new_course_blocks_column.py"]

    replay(chdb_backend, migrations)
    assert check_schema(chdb_backend) == [
        "`event_sink`.`course_blocks`: column `block_key` (String) is not in the contract; "
        "the older writers insert positionally and do not send it"
    ]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("op.add_column('course_blocks', None)", "0042_x.py calls op.add_column"),
        ("op.execute('RENAME TABLE event_sink.tmp TO event_sink.course_blocks')", "does not understand"),
        ("op.execute('ALTER TABLE reporting.course_blocks DROP COLUMN org')", "not in event_sink"),
        ("op.execute('INSERT INTO event_sink.course_blocks (org) SELECT org FROM event_sink.old')", "does not understand"),
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
