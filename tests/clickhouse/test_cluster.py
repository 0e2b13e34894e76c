"""
The replicated test cluster (scripts/clickhouse-test-cluster: ZooKeeper and two 18.16
replicas of one shard): the fixtures, the schema command with --cluster, and exactly once
through replication: a resent batch is one identical block, which ReplicatedMergeTree stores
once whichever replica takes it.
"""

import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError

from clickhouse_outbox.clickhouse.backends import build_backend
from clickhouse_outbox.clickhouse.backends.base import GZIP, insert_statement, qualified_name, quote_identifier
from clickhouse_outbox.clickhouse.backends.http import MAX_INSERT_BLOCK_SIZE
from clickhouse_outbox.clickhouse.cluster import check_cluster_schema
from clickhouse_outbox.clickhouse.schema import REPLICATED_TABLE_PATH, TYPE_FALLBACKS, create_schema, create_table_sql
from clickhouse_outbox.clickhouse.tables import COURSE_BLOCKS, all_tables
from clickhouse_outbox.serializers.payloads import compress, gzip_body
from tests.clickhouse_fixtures import replica_backend_config, replicas_agree

from .conftest import block_row, encode_rows

pytestmark = pytest.mark.clickhouse_cluster

PROJECT_DIR = Path(__file__).resolve().parents[2]
REPLICATION_WAIT = 20  # seconds


def run(*args):
    out = io.StringIO()
    call_command("clickhouse_outbox_schema", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def wait_for_replication(backends, table=COURSE_BLOCKS.name, timeout=REPLICATION_WAIT):
    """Row counts of `table` per replica once the replicas agree and have nothing queued."""
    return [counts[table] for counts in replicas_agree(backends, [table], timeout)]


def batch_payload(rows, rows_per_entry=50):
    """A batch's body as the drain sends it: one gzip member per entry, joined."""
    lines = encode_rows(rows).splitlines(keepends=True)
    entries = [compress(b"".join(lines[i:i + rows_per_entry])) for i in range(0, len(lines), rows_per_entry)]
    return gzip_body((entry, GZIP) for entry in entries)


@pytest.fixture
def cluster_tables(cluster_backends, cluster_config):
    """The contract's tables, created ON CLUSTER through replica 1."""
    create_schema(cluster_backends[0], cluster=cluster_config["cluster"])
    return cluster_backends


# -- the fixtures and the script ------------------------------------------------------------


def test_unconfigured_cluster_fails_with_how_to_start_it(tmp_path):
    (tmp_path / "test_needs_cluster.py").write_text("def test_it(cluster_backends):\n    pass\n")
    env = {name: value for name, value in os.environ.items() if not name.startswith("CLICKHOUSE_CLUSTER_")}
    env["PYTHONPATH"] = str(PROJECT_DIR)

    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "pytest", "-p", "tests.clickhouse_fixtures", "-p", "no:django", "-p", "no:cacheprovider",
         "-q", str(tmp_path / "test_needs_cluster.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )

    assert result.returncode == 1, result.stdout
    assert "1 error" in result.stdout and "skipped" not in result.stdout
    assert "start it: scripts/clickhouse-test-cluster start; eval $(scripts/clickhouse-test-cluster env)" in result.stdout


def test_the_database_is_on_both_replicas(cluster_backends, cluster_config):
    assert len(cluster_backends) == 2
    for backend in cluster_backends:
        assert backend.query(f"SELECT name FROM system.databases WHERE name = '{backend.database}'")
        assert backend.server_info().version[:2] == (18, 16)
        clusters = backend.query(
            f"SELECT replica_num FROM system.clusters WHERE cluster = '{cluster_config['cluster']}'"
        )
        assert sorted(int(row["replica_num"]) for row in clusters) == [1, 2]
    macros = [
        {row["macro"]: row["substitution"] for row in backend.query("SELECT macro, substitution FROM system.macros")}
        for backend in cluster_backends
    ]
    assert macros[0]["shard"] == macros[1]["shard"] and macros[0]["replica"] != macros[1]["replica"]


def test_the_script_prints_what_the_fixtures_read():
    done = subprocess.run(  # noqa: S603
        [str(PROJECT_DIR / "scripts" / "clickhouse-test-cluster"), "env"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    names = {line.split("=", 1)[0] for line in done.stdout.splitlines()}
    assert {"CLICKHOUSE_CLUSTER_URLS", "CLICKHOUSE_CLUSTER_USERNAME", "CLICKHOUSE_CLUSTER_PASSWORD",
            "CLICKHOUSE_CLUSTER_NAME"} <= names


def test_replicas_want_the_password(cluster_config):
    for url in cluster_config["urls"]:
        answer = requests.post(url, data=b"SELECT 1", headers={"X-ClickHouse-User": cluster_config["username"]},
                               timeout=5)
        assert answer.status_code != 200


# -- the schema on a cluster ----------------------------------------------------------------


def test_create_on_cluster_makes_replicated_tables_on_every_replica(cluster_tables):
    for backend in cluster_tables:
        tables = {
            row["name"]: row
            for row in backend.query(
                f"SELECT name, engine, engine_full FROM system.tables WHERE database = '{backend.database}'"
            )
        }
        assert set(tables) == {table.name for table in all_tables()}
        for table in all_tables():
            assert tables[table.name]["engine"] == f"Replicated{table.engine}"
            # The same partition and sort key as on one server (18.16 writes them without the backquotes).
            engine_full = tables[table.name]["engine_full"].replace("`", "")
            order_by = ", ".join(quote_identifier(name).strip("`") for name in table.order_by)
            assert f" ORDER BY ({order_by})" in engine_full, engine_full
            assert (f" PARTITION BY {table.partition_by} " in engine_full) == bool(table.partition_by), engine_full
        replicas = backend.query(
            f"SELECT table, zookeeper_path, total_replicas, active_replicas FROM system.replicas "
            f"WHERE database = '{backend.database}'"
        )
        for row in replicas:
            assert row["zookeeper_path"] == f"/clickhouse/tables/01/{backend.database}/{row['table']}"
            assert int(row["total_replicas"]) == int(row["active_replicas"]) == 2
    for table in all_tables():
        ddl = create_table_sql(table, "db", cluster_tables[0].server_info(), cluster="c")
        single = create_table_sql(table, "db", cluster_tables[0].server_info())
        assert ddl.split("ORDER BY")[1] == single.split("ORDER BY")[1]
        assert REPLICATED_TABLE_PATH in ddl


def test_create_again_creates_what_a_replica_lacks(cluster_tables, cluster_config):
    first, second = cluster_tables
    second.command(f"DROP TABLE {qualified_name(second.database, COURSE_BLOCKS.name)}")  # on replica 2 only

    report = create_schema(first, cluster=cluster_config["cluster"])

    assert f"Ensured table {qualified_name(first.database, COURSE_BLOCKS.name)} on every replica ON CLUSTER " \
           f"{quote_identifier(cluster_config['cluster'])}" in report
    assert COURSE_BLOCKS.name in {row["name"] for row in second.query(
        f"SELECT name FROM system.tables WHERE database = '{second.database}'")}


@pytest.fixture
def cluster_settings(settings, cluster_config, cluster_backends):
    """The plugin pointed at both replicas (the `urls` list), on the test's database."""
    database = cluster_backends[0].database
    config = replica_backend_config(cluster_config, 0, database)
    del config["url"]
    config["urls"] = list(cluster_config["urls"])
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = config
    return config


@pytest.mark.django_db
def test_command_creates_and_checks_every_replica(cluster_backends, cluster_settings, cluster_config):
    cluster = cluster_config["cluster"]

    created = run("--create", "--cluster", cluster)
    checked = run("--check", "--cluster", cluster)

    assert "Created table" in created
    lines = checked.splitlines()
    assert lines[0] == "schema OK"
    assert len([line for line in lines if line.startswith("  checked replica")]) == 2
    for number, url in enumerate(cluster_config["urls"], start=1):
        assert any(f"replica {number} of shard 1" in line and url in line for line in lines), lines


@pytest.mark.django_db
def test_check_names_the_replica_that_differs(cluster_tables, cluster_settings, cluster_config):
    cluster = cluster_config["cluster"]
    second = cluster_tables[1]
    table = qualified_name(second.database, COURSE_BLOCKS.name)
    second.command(f"DROP TABLE {table}")

    with pytest.raises(CommandError) as caught:
        run("--check", "--cluster", cluster)

    message = str(caught.value)
    port = cluster_config["urls"][1].rsplit(":", 1)[1]
    assert f"replica 2 of shard 1 of cluster {cluster}" in message
    assert f"127.0.0.1:{port}: Table {table} does not exist" in message
    assert "replica 1 of shard 1" not in message


def test_check_finds_replicas_that_do_not_replicate(cluster_tables, cluster_config):
    """A table made by hand on replica 2 under another ZooKeeper path: both are ReplicatedMergeTree, yet apart."""
    cluster = cluster_config["cluster"]
    first, second = cluster_tables
    table = qualified_name(second.database, COURSE_BLOCKS.name)
    second.command(f"DROP TABLE {table}")
    ddl = create_table_sql(COURSE_BLOCKS, second.database, second.server_info(), cluster=None)
    columns_and_order = ddl.split("\n", 1)[1].replace("ENGINE = MergeTree", "ENGINE = ReplicatedMergeTree("
                                                     f"'/clickhouse/tables/by-hand/{second.database}/course_blocks', "
                                                     "'{replica}')")
    second.command(f"CREATE TABLE {table}\n{columns_and_order}")
    failover = build_backend(dict(replica_backend_config(cluster_config, 0, first.database),
                                  url=None, urls=cluster_config["urls"]))
    try:
        checked, problems = check_cluster_schema(failover, cluster)
    finally:
        failover.close()

    assert len(checked) == 2
    (problem,) = problems
    assert problem.startswith(f"{table}: the replicas do not share one ZooKeeper path")
    assert f"/clickhouse/tables/by-hand/{second.database}/course_blocks" in problem


def test_check_through_one_url_says_which_replica_it_could_not_reach(cluster_tables, cluster_config):
    """Two replicas on one host: replica 2's HTTP port is its own, so only a configured URL reaches it."""
    cluster = cluster_config["cluster"]
    only_first = build_backend(replica_backend_config(cluster_config, 0, cluster_tables[0].database))
    try:
        checked, problems = check_cluster_schema(only_first, cluster)
    finally:
        only_first.close()

    assert len(checked) == 1 and "replica 1 of shard 1" in checked[0]
    (problem,) = problems
    assert problem.startswith(f"replica 2 of shard 1 of cluster {cluster}")
    assert "not checked: no configured URL reaches it" in problem


def test_check_of_an_unknown_cluster(cluster_tables):
    checked, problems = check_cluster_schema(cluster_tables[0], "no_such_cluster")
    assert checked == []
    assert problems == [
        f"Cluster no_such_cluster is not defined on the server at {cluster_tables[0].url.rstrip('/')} "
        "(system.clusters has no such cluster: check remote_servers in its configuration)"
    ]


# -- exactly once through replication -------------------------------------------------------


def test_a_resent_batch_is_stored_once_through_either_replica(cluster_tables):
    first, second = cluster_tables
    dump_id = str(uuid.uuid4())
    rows = [block_row(order, display_name=f"Unit {order} ✓", dump_id=dump_id) for order in range(1, 1201)]
    payload = batch_payload(rows)

    first.insert(COURSE_BLOCKS, payload, rows=len(rows), encoding=GZIP)
    first.insert(COURSE_BLOCKS, payload, rows=len(rows), encoding=GZIP)  # the answer was lost: sent again
    second.insert(COURSE_BLOCKS, payload, rows=len(rows), encoding=GZIP)  # ... and again, to the other replica

    assert wait_for_replication(cluster_tables) == [len(rows), len(rows)]
    parts = first.query(
        f"SELECT count() AS n FROM system.parts WHERE database = '{first.database}' AND table = 'course_blocks'"
    )
    assert int(parts[0]["n"]) == 1  # one block, stored once


def post(url, config, sql_or_body, **params):
    """A bare HTTP request to a replica (none of the plugin's settings); fails on an error."""
    headers = {"X-ClickHouse-User": config["username"], "X-ClickHouse-Key": config["password"]}
    if "query" in params:
        headers["Content-Encoding"] = "gzip"
    answer = requests.post(url, params=params, data=sql_or_body, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.text


def test_a_batch_split_differently_is_stored_twice_and_the_plugin_never_splits(cluster_tables, cluster_config):
    """
    A batch is deduplicated block by block. With a user profile (here: an HTTP session) whose
    max_insert_block_size and min_insert_block_size_rows are 100, 18.16 writes 1,000 rows as 10
    blocks; a resend through the other replica with the defaults is 1 block: other hashes,
    stored twice. (A small max_insert_block_size alone does not split on 18.16: blocks are
    squashed back up to min_insert_block_size_rows before they are written.) The plugin sends
    max_insert_block_size >= the batch's rows: the batch is parsed as one block, squashing never
    splits a block, so its resends are the same block through either replica: stored once.
    """
    first, second = cluster_tables
    rows_n = 1000
    unprotected, protected = str(uuid.uuid4()), str(uuid.uuid4())
    payload = batch_payload([block_row(order, dump_id=unprotected) for order in range(1, rows_n + 1)])
    session_id = f"outbox-test-{uuid.uuid4().hex}"
    url_1, url_2 = cluster_config["urls"]
    post(url_1, cluster_config, b"SET max_insert_block_size = 100, min_insert_block_size_rows = 100",
         session_id=session_id)
    insert = insert_statement(first.database, COURSE_BLOCKS)

    # Without the plugin's setting: 10 blocks through replica 1's session, then 1 block through replica 2
    # (identical unsplit sends are stored once: test_a_resent_batch_is_stored_once_through_either_replica).
    post(url_1, cluster_config, payload, query=insert, session_id=session_id)
    post(url_2, cluster_config, payload, query=insert)
    assert wait_for_replication(cluster_tables) == [2 * rows_n, 2 * rows_n]

    # The plugin through the same session: its own max_insert_block_size wins, one block.
    payload = batch_payload([block_row(order, dump_id=protected) for order in range(1, rows_n + 1)])
    first.params = {"session_id": session_id}  # the session with the small sizes
    settings = {row["name"]: row["value"] for row in first.query(
        "SELECT name, value FROM system.settings WHERE name IN ('max_insert_block_size', 'min_insert_block_size_rows')"
    )}
    assert settings == {"max_insert_block_size": "100", "min_insert_block_size_rows": "100"}
    first.insert(COURSE_BLOCKS, payload, rows=rows_n, encoding=GZIP)
    first.insert(COURSE_BLOCKS, payload, rows=rows_n, encoding=GZIP)
    second.insert(COURSE_BLOCKS, payload, rows=rows_n, encoding=GZIP)

    assert wait_for_replication(cluster_tables) == [3 * rows_n, 3 * rows_n]
    for backend in cluster_tables:
        assert count_where(backend, f"dump_id = toUUID('{unprotected}')") == 2 * rows_n
        assert count_where(backend, f"dump_id = toUUID('{protected}')") == rows_n
    assert MAX_INSERT_BLOCK_SIZE >= rows_n


def count_where(backend, where):
    table = qualified_name(backend.database, COURSE_BLOCKS.name)
    return int(backend.query(f"SELECT count() AS n FROM {table} WHERE {where}")[0]["n"])


# -- without a server: how a URL is matched to a replica --------------------------------------


class FakeReplica:
    """A server as check_cluster_schema sees it: the cluster, its replicated tables, their ZooKeeper entry."""

    def __init__(self, url, members, tcp_port, *, database="event_sink", shard="01"):
        self.url = url + "/"
        self.host = url.split("//")[1].rsplit(":", 1)[0]
        self.database = database
        self.members = members
        self.tcp_port = tcp_port
        self.shard = shard

    def query(self, sql):
        if "FROM system.clusters" in sql:
            return [dict(zip(("shard_num", "replica_num", "host_name", "host_address", "port"), member, strict=True))
                    for member in self.members]
        if "FROM system.replicas" in sql:
            return [{"table": table.name, "zookeeper_path": f"/clickhouse/tables/{self.shard}/db/{table.name}",
                     "replica_name": f"{self.host}-{self.tcp_port}", "is_readonly": 0} for table in all_tables()]
        if "FROM system.zookeeper" in sql:
            return [{"value": f"host: {self.host}\nport: 9009\ntcp_port: {self.tcp_port}\nscheme: http\n"}]
        if "FROM system.databases" in sql:
            return [{"name": self.database}]
        if "FROM system.tables" in sql:
            return [{"name": table.name, "engine": f"Replicated{table.engine}"} for table in all_tables()]
        if sql.startswith("DESCRIBE TABLE"):
            table = next(t for t in all_tables() if f"`{t.name}`" in sql)
            return [{"name": column.name, "type": TYPE_FALLBACKS.get(column.type, column.type)}  # as 18.16 has them
                    for column in table.columns]
        raise AssertionError(sql)


class FakeFailover:
    def __init__(self, replicas):
        self.replicas = replicas


def test_urls_on_other_hosts_are_matched_by_host_and_tcp_port():
    members = [(1, 1, "ch-1", "10.0.0.1", 9000), (1, 2, "ch-2", "10.0.0.2", 9000)]
    backend = FakeFailover([FakeReplica("http://ch-2:8123", members, 9000),
                            FakeReplica("http://ch-1:8123", members, 9000)])

    checked, problems = check_cluster_schema(backend, "main")

    assert problems == []
    assert checked == [
        "replica 2 of shard 1 of cluster main (ch-2:9000 tcp) at http://ch-2:8123",
        "replica 1 of shard 1 of cluster main (ch-1:9000 tcp) at http://ch-1:8123",
    ]


def test_urls_that_reach_two_shards_are_a_problem():
    members = [(1, 1, "ch-1", "10.0.0.1", 9000), (2, 1, "ch-2", "10.0.0.2", 9000)]
    backend = FakeFailover([FakeReplica("http://ch-1:8123", members, 9000),
                            FakeReplica("http://ch-2:8123", members, 9000, shard="02")])

    _, problems = check_cluster_schema(backend, "main")

    assert problems == [
        "The configured URLs reach replicas of different shards (1, 2) of cluster main: a batch resent to another "
        "shard is not deduplicated. List the replicas of one shard only"
    ]
