"""
Creating the destination tables, and checking existing ones against the data contract.
"""

import pytest

from clickhouse_outbox.clickhouse.backends.base import ServerInfo, qualified_name, quote_identifier
from clickhouse_outbox.clickhouse.schema import (
    check_schema,
    create_database_sql,
    create_schema,
    create_table_sql,
    describe_table,
    table_differences,
    types_match,
)
from clickhouse_outbox.clickhouse.tables import (
    COURSE_BLOCKS,
    COURSE_ENROLLMENT,
    COURSE_OVERVIEWS,
    COURSE_RELATIONSHIPS,
    USER_PROFILE,
    all_tables,
)

OLD = ServerInfo(version=(18, 16, 1))
CURRENT = ServerInfo(version=(24, 8, 4, 13))
COURSE_TABLES = [COURSE_OVERVIEWS, COURSE_BLOCKS, COURSE_RELATIONSHIPS]


def test_create_then_check_is_ok(backend):
    report = create_schema(backend)

    assert report[0] == f"Created database `{backend.database}`" or report[0] == f"Found database `{backend.database}`"
    assert [line for line in report if line.startswith("Created table")] == [
        f"Created table {qualified_name(backend.database, table.name)}" for table in all_tables()
    ]
    assert check_schema(backend) == []


def test_create_again_finds_everything(backend):
    create_schema(backend)

    report = create_schema(backend)

    assert all(line.startswith("Found") for line in report)
    assert len(report) == 1 + len(all_tables())


def test_bool_falls_back_to_uint8_where_the_server_lacks_it(backend):
    create_schema(backend)

    self_paced = dict(describe_table(backend, "course_overviews"))["self_paced"]

    assert self_paced == ("Bool" if backend.server_info().supports_bool else "UInt8")
    mode = dict(describe_table(backend, "course_enrollment"))["mode"]
    assert mode == ("LowCardinality(String)" if backend.server_info().supports_low_cardinality else "String")
    assert [name for name, _ in describe_table(backend, "course_blocks")] == list(COURSE_BLOCKS.column_names)


def test_dedup_window_only_where_the_server_has_it(backend):
    create_schema(backend)

    statement = backend.query(f"SHOW CREATE TABLE {qualified_name(backend.database, 'course_blocks')}")[0]
    ddl = next(iter(statement.values()))

    has_window = "non_replicated_deduplication_window = 1000" in ddl
    assert has_window == backend.server_info().supports_non_replicated_deduplication_window
    assert has_window == (backend.server_info().version >= (21, 5))


def test_check_reports_a_missing_database(backend):
    backend.command(f"DROP DATABASE {quote_identifier(backend.database)}")

    assert check_schema(backend) == [
        f"Database `{backend.database}` does not exist (run: manage.py clickhouse_outbox_schema --create)"
    ]


def test_check_reports_missing_tables(backend):
    backend.command(create_table_sql(COURSE_BLOCKS, backend.database, backend.server_info()))

    problems = check_schema(backend)

    hint = "(run: manage.py clickhouse_outbox_schema --create)"
    assert problems == [
        f"Table {qualified_name(backend.database, table.name)} does not exist {hint}"
        for table in all_tables()
        if table is not COURSE_BLOCKS
    ]
    assert problems[:2] == [
        f"Table `{backend.database}`.`course_overviews` does not exist {hint}",
        f"Table `{backend.database}`.`course_relationships` does not exist {hint}",
    ]


def create_wrong_table(backend, name, columns):
    backend.command(
        f"CREATE TABLE {qualified_name(backend.database, name)} ({columns}) ENGINE = MergeTree ORDER BY tuple()"
    )


def test_check_reports_missing_column_wrong_type_and_wrong_order(backend):
    create_schema(backend, tables=[COURSE_OVERVIEWS])
    # Missing `edited_on`, `order` is Int64, an extra column.
    create_wrong_table(
        backend, "course_blocks",
        "org String, course_key String, location String, display_name String, xblock_data_json String, "
        "`order` Int64, dump_id UUID, time_last_dumped String, extra String",
    )
    # dump_id and `order` swapped: a positional (FORMAT CSV) writer would fill the wrong columns.
    create_wrong_table(
        backend, "course_relationships",
        "course_key String, parent_location String, child_location String, dump_id UUID, `order` Int32, "
        "time_last_dumped String",
    )
    blocks = qualified_name(backend.database, "course_blocks")
    relationships = qualified_name(backend.database, "course_relationships")

    problems = check_schema(backend, tables=COURSE_TABLES)

    assert problems == [
        f"{blocks}: column `order` is Int64, the contract says Int32",
        f"{blocks}: column `edited_on` (String) is missing",
        (
            f"{blocks}: column `extra` (String) is not in the contract; the older writers insert positionally "
            "and do not send it"
        ),
        (
            f"{relationships}: columns are in the order (course_key, parent_location, child_location, dump_id, "
            "order, time_last_dumped) but the contract's order is (course_key, parent_location, child_location, "
            "order, dump_id, time_last_dumped); the older writers insert positionally (FORMAT CSV without a column "
            "list), so their values would land in the wrong columns"
        ),
    ]


def test_check_reports_a_wrong_engine(backend):
    create_schema(backend, tables=[COURSE_OVERVIEWS, COURSE_BLOCKS])
    columns = ", ".join(f"`{column.name}` {column.type}" for column in COURSE_RELATIONSHIPS.columns)
    backend.command(f"CREATE TABLE {qualified_name(backend.database, 'course_relationships')} ({columns}) ENGINE = Log")

    table = qualified_name(backend.database, "course_relationships")
    assert check_schema(backend, tables=COURSE_TABLES) == [
        f"{table}: engine is Log, the contract says MergeTree (ReplicatedMergeTree on a cluster)"
    ]


def test_check_wants_replacing_merge_tree_where_aspects_makes_one(backend):
    """user_profile & co are read FINAL or through a dictionary: a plain MergeTree would keep every copy."""
    columns = ", ".join(f"`{column.name}` {column.type}" for column in USER_PROFILE.columns)
    table = qualified_name(backend.database, USER_PROFILE.name)
    backend.command(f"CREATE TABLE {table} ({columns}) ENGINE = MergeTree ORDER BY (id, time_last_dumped)")

    assert check_schema(backend, tables=[USER_PROFILE]) == [
        f"{table}: engine is MergeTree, the contract says ReplacingMergeTree (ReplicatedReplacingMergeTree on a cluster)"
    ]


def test_check_with_a_cluster_wants_replicated_tables(backend):
    create_schema(backend)

    problems = check_schema(backend, cluster="main")

    assert problems == [
        f"{qualified_name(backend.database, table.name)}: engine is {table.engine}, the contract says "
        f"Replicated{table.engine} (a cluster was named)"
        for table in all_tables()
    ]
    assert {table.engine for table in all_tables()} == {"MergeTree", "ReplacingMergeTree"}


def test_uint8_for_bool_is_accepted_on_a_server_that_has_bool(chdb_backend):
    """
    A table made on an old server keeps UInt8 (for Bool) and String (for LowCardinality(String))
    after an upgrade: still the contract.
    """
    made_on_the_old_server = [COURSE_OVERVIEWS, COURSE_ENROLLMENT]
    create_schema(chdb_backend, tables=[table for table in all_tables() if table not in made_on_the_old_server])
    for table in made_on_the_old_server:
        chdb_backend.command(create_table_sql(table, chdb_backend.database, OLD))

    assert dict(describe_table(chdb_backend, "course_overviews"))["self_paced"] == "UInt8"
    enrollment = dict(describe_table(chdb_backend, "course_enrollment"))
    assert (enrollment["is_active"], enrollment["mode"]) == ("UInt8", "String")
    assert check_schema(chdb_backend) == []


class TestClusterDdl:
    """The ON CLUSTER DDL, as SQL (run on a real cluster in tests/clickhouse/test_cluster.py)."""

    def test_database(self):
        sql = create_database_sql("event_sink", "main")
        assert sql == "CREATE DATABASE IF NOT EXISTS `event_sink` ON CLUSTER `main`"

    def test_table(self):
        assert create_table_sql(COURSE_RELATIONSHIPS, "event_sink", CURRENT, cluster="main") == (
            "CREATE TABLE IF NOT EXISTS `event_sink`.`course_relationships` ON CLUSTER `main`\n"
            "(\n"
            "    `course_key` String,\n"
            "    `parent_location` String,\n"
            "    `child_location` String,\n"
            "    `order` Int32,\n"
            "    `dump_id` UUID,\n"
            "    `time_last_dumped` String\n"
            ")\n"
            "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')\n"
            "ORDER BY (`course_key`, `parent_location`, `child_location`, `time_last_dumped`, `order`)"
        )

    def test_create_schema_sends_everything_on_cluster(self):
        class Recorder:
            database = "event_sink"

            def __init__(self):
                self.statements = []

            def server_info(self):
                return CURRENT

            def query(self, sql):
                return []

            def command(self, sql):
                self.statements.append(sql)

        recorder = Recorder()

        report = create_schema(recorder, cluster="main")

        assert len(recorder.statements) == 1 + len(all_tables())
        assert all(" ON CLUSTER `main`" in statement for statement in recorder.statements)
        for table, statement in zip(all_tables(), recorder.statements[1:], strict=True):
            assert f"`event_sink`.`{table.name}` ON CLUSTER" in statement
            assert f"ENGINE = Replicated{table.engine}(" in statement
        assert not any("non_replicated_deduplication_window" in statement for statement in recorder.statements)
        assert report[1:] == [f"Created table `event_sink`.`{table.name}` ON CLUSTER `main`" for table in all_tables()]

    def test_replacing_table_with_a_partition(self):
        assert create_table_sql(USER_PROFILE, "event_sink", CURRENT, cluster="main").endswith(
            "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')\n"
            "PARTITION BY user_id % 100\n"
            "ORDER BY (`id`, `time_last_dumped`)"
        )


class TestSingleNodeDdl:
    def test_current_server(self):
        sql = create_table_sql(COURSE_OVERVIEWS, "event_sink", CURRENT)
        assert "`self_paced` Bool," in sql
        assert "ENGINE = MergeTree\n" in sql
        assert sql.endswith("SETTINGS non_replicated_deduplication_window = 1000")
        assert "ON CLUSTER" not in sql

    def test_old_server(self):
        sql = create_table_sql(COURSE_OVERVIEWS, "event_sink", OLD)
        assert "`self_paced` UInt8," in sql
        assert "SETTINGS" not in sql

    def test_low_cardinality_falls_back_to_string_before_19_9(self):
        assert "`mode` LowCardinality(String)," in create_table_sql(COURSE_ENROLLMENT, "event_sink", CURRENT)
        assert "`mode` String," in create_table_sql(COURSE_ENROLLMENT, "event_sink", OLD)
        assert "`mode` LowCardinality(String)," in create_table_sql(
            COURSE_ENROLLMENT, "event_sink", ServerInfo(version=(19, 9, 1))
        )

    def test_replacing_table_with_a_partition(self):
        assert create_table_sql(USER_PROFILE, "event_sink", CURRENT).endswith(
            "ENGINE = ReplacingMergeTree\n"
            "PARTITION BY user_id % 100\n"
            "ORDER BY (`id`, `time_last_dumped`)\n"
            "SETTINGS non_replicated_deduplication_window = 1000"
        )


@pytest.mark.parametrize(
    ("expected", "actual", "match"),
    [
        ("String", "String", True),
        ("Bool", "Bool", True),
        ("Bool", "UInt8", True),
        ("Bool", "BOOLEAN", True),
        ("Int32", "INT", True),
        ("String", "TEXT", True),
        ("Int32", "Int64", False),
        ("Int32", "UInt32", False),
        ("String", "Nullable(String)", False),
        ("String", "LowCardinality(String)", False),
        ("LowCardinality(String)", "LowCardinality(String)", True),
        ("LowCardinality(String)", "lowcardinality( String )", True),
        ("LowCardinality(String)", "String", True),
        ("LowCardinality(String)", "LowCardinality(Nullable(String))", False),
        ("UUID", "String", False),
        ("Bool", "Int8", False),
    ],
)
def test_types_match(expected, actual, match):
    assert types_match(expected, actual) is match


def test_differences_of_an_exact_table_are_none():
    columns = [(column.name, column.type) for column in COURSE_BLOCKS.columns]
    assert table_differences(COURSE_BLOCKS, "event_sink", columns) == []
