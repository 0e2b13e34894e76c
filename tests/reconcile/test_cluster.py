"""
Verification on the replicated test cluster (two replicas, ZooKeeper): through one replica
or on each, (b) one block row dropped (the mutation replicates) and (e) one replica's table
wiped (DROP TABLE on that replica alone), found, repaired and verified again.
"""

import time

import pytest

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.clickhouse.schema import create_schema
from clickhouse_outbox.clickhouse.tables import COURSE_BLOCKS
from clickhouse_outbox.outbox import registry
from clickhouse_outbox.outbox.drain import drain_until_empty
from tests.clickhouse_fixtures import replica_backend_config, replicas_agree
from tests.reconcile.helpers import delete_rows, differ, latest, publish_courses, verify

pytestmark = [pytest.mark.django_db, pytest.mark.clickhouse_cluster]

COURSES = ("--producer", "course_structure")
REPLICATION_WAIT = 60


@pytest.fixture
def replicas(cluster_backends, cluster_config, settings):
    """Both replicas, the contract's tables made ON CLUSTER, the plugin pointed at both (`urls`)."""
    create_schema(cluster_backends[0], cluster=cluster_config["cluster"])
    config = replica_backend_config(cluster_config, 0, cluster_backends[0].database)
    del config["url"]
    config["urls"] = list(cluster_config["urls"])
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = config
    return cluster_backends


@pytest.fixture
def courses(replicas, olx_source, tmp_path):
    keys = publish_courses(olx_source, tmp_path / "exports", 3)
    wait_for_replication(replicas)
    code, report = verify(*COURSES, "--replicas", "each")
    assert (code, report["counts"]["ok"]) == (0, 3), report
    return keys


def blocks_held(backend):
    table = qualified_name(backend.database, COURSE_BLOCKS.name)
    return int(backend.query(f"SELECT count() AS n FROM {table}")[0]["n"])


def wait_for_replication(backends, timeout=REPLICATION_WAIT):
    """The course_blocks rows once both replicas agree on every course table (what a verification reads)."""
    tables = [table.name for table in registry.get("course_structure").tables]
    return replicas_agree(backends, tables, timeout)[0][COURSE_BLOCKS.name]


def test_a_dropped_row_is_found_through_one_replica_and_on_each(courses, replicas):
    key = courses[0]
    blocks = latest(key).table_rows[COURSE_BLOCKS.name]
    delete_rows(replicas[0], COURSE_BLOCKS.name, f"course_key = '{key}' AND `order` = 1")
    for backend in replicas:  # the mutation reached the other replica through ZooKeeper
        deadline = time.monotonic() + REPLICATION_WAIT
        while blocks_held(backend) != 3 * blocks - 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)

    _, through_one = verify(*COURSES)
    code, on_each = verify(*COURSES, "--replicas", "each")

    assert differ(through_one)[key][0] == "missing"
    verdict, details = differ(on_each)[key]
    assert (code, verdict) == (1, "missing")
    assert sorted(details["replicas"]) == sorted(backend.address for backend in replicas)
    for counts in details["replicas"].values():
        assert counts[COURSE_BLOCKS.name] == {"expected": blocks, "found": blocks - 1, "distinct": blocks - 1}

    verify(*COURSES, "--replicas", "each", "--repair")
    assert drain_until_empty(timeout=60)[0].ok
    wait_for_replication(replicas)
    code, again = verify(*COURSES, "--replicas", "each")
    assert (code, again["differ"]) == (0, [])


def test_a_replica_that_lost_its_table_is_found_on_each_and_made_again(courses, replicas, cluster_config):
    first, second = replicas
    before = blocks_held(first)
    second.command(f"DROP TABLE {qualified_name(second.database, COURSE_BLOCKS.name)}")  # this replica only

    code_one, through_one = verify(*COURSES)
    code, on_each = verify(*COURSES, "--replicas", "each")

    assert (code_one, through_one["differ"]) == (0, [])  # replica 1 holds everything: one replica cannot tell
    assert code == 1
    assert on_each["missing_tables"] == {COURSE_BLOCKS.name: [second.address]}
    assert set(differ(on_each)) == set(courses)
    for key in courses:
        verdict, details = differ(on_each)[key]
        blocks = latest(key).table_rows[COURSE_BLOCKS.name]
        assert verdict == "missing"
        assert details["replicas"][second.address][COURSE_BLOCKS.name] == {
            "expected": blocks, "found": 0, "distinct": 0, "missing_table": True}
        assert details["replicas"][first.address][COURSE_BLOCKS.name]["found"] == blocks

    _, repaired = verify(*COURSES, "--replicas", "each", "--repair", "--cluster", cluster_config["cluster"])

    assert any(line.startswith(f"Ensured table {qualified_name(second.database, COURSE_BLOCKS.name)}")
               for line in repaired["recreated"]), repaired["recreated"]
    assert drain_until_empty(timeout=60)[0].ok
    # Replication fetched the old rows into the new table, and the repair's new snapshots came on top.
    assert wait_for_replication(replicas) == before + sum(latest(key).table_rows[COURSE_BLOCKS.name]
                                                          for key in courses)
    code, again = verify(*COURSES, "--replicas", "each")
    assert (code, again["differ"], again["missing_tables"]) == (0, [], {})
