"""
Failover and insert_quorum on the real replicated test cluster (two 18.16 replicas of one
shard, scripts/clickhouse-test-cluster): an answer lost on one replica and resent through
the other is stored once, because the replicated table deduplicates the identical block
per shard; with insert_quorum = 2 an acknowledged insert is on both replicas already, and
with a replica down the insert is refused (and pauses new claims) instead of failing over.

FaultProxy (tests/proxy.py) holds replica 1's answer past the read timeout: a lost answer
cannot be produced on demand otherwise.
"""

import logging
import subprocess
import time

import pytest

from clickhouse_outbox.clickhouse.backends import build_backend
from clickhouse_outbox.clickhouse.backends.base import quote_string
from clickhouse_outbox.clickhouse.backends.failover import FailoverBackend
from clickhouse_outbox.clickhouse.errors import ClickHouseRejected, describe_failure, is_server_wide
from clickhouse_outbox.clickhouse.schema import create_schema
from clickhouse_outbox.clickhouse.tables import COURSE_BLOCKS
from tests.processes import ROOT
from tests.proxy import FaultProxy

from .conftest import block_row, encode_rows, new_dump_id, select_blocks

pytestmark = pytest.mark.clickhouse_cluster

CLUSTER_SCRIPT = ROOT / "scripts" / "clickhouse-test-cluster"


def failover_config(cluster_config, database, urls, **overrides):
    return {
        "urls": urls,
        "username": cluster_config["username"],
        "password": cluster_config["password"],
        "database": database,
        "timeout_secs": cluster_config["timeout_secs"],
        "connect_timeout_secs": cluster_config["connect_timeout_secs"],
        **overrides,
    }


def replication_done(backend):
    """The replica has fetched every part it knows of (18.16 has no SYSTEM SYNC REPLICA)."""
    rows = backend.query(
        f"SELECT sum(queue_size) AS n FROM system.replicas WHERE database = {quote_string(backend.database)}"
    )
    return int(rows[0]["n"]) == 0


def wait_for_rows(backend, dump_id, at_least, timeout=60):
    deadline = time.monotonic() + timeout
    while not (replication_done(backend) and len(select_blocks(backend, dump_id)) >= at_least):
        assert time.monotonic() < deadline, f"{backend.address} did not get {at_least} rows within {timeout}s"
        time.sleep(0.1)


def insert_blocks(backend, dump_id, *orders):
    rows = [block_row(order, dump_id=dump_id) for order in orders]
    return backend.insert(COURSE_BLOCKS, encode_rows(rows), rows=len(rows))


def test_a_lost_answer_resent_through_the_other_replica_is_stored_once(cluster_config, cluster_backends, caplog):
    caplog.set_level(logging.INFO)
    replica_1, replica_2 = cluster_backends
    create_schema(replica_1, cluster=cluster_config["cluster"])
    dump_id = new_dump_id()
    with FaultProxy(cluster_config["urls"][0], match=b"INSERT") as slow:
        slow.delay_response(5)  # replica 1 writes the rows; its answer comes after our timeout
        backend = build_backend(failover_config(
            cluster_config, replica_1.database, [slow.url, cluster_config["urls"][1]], timeout_secs=1,
        ))
        assert isinstance(backend, FailoverBackend)

        insert_blocks(backend, dump_id, 1, 2, 3)

        assert len(slow.matched_exchanges()) == 1  # replica 1 got the INSERT (and wrote it)
        assert backend.current.address == replica_2.address  # replica 2 answered the resend
    assert any("did not answer the INSERT of 3 rows" in record.getMessage() for record in caplog.records)
    for replica in (replica_1, replica_2):
        wait_for_rows(replica, dump_id, at_least=3)
        assert [row["order"] for row in select_blocks(replica, dump_id)] == [1, 2, 3], replica.address


def test_insert_quorum_acknowledges_once_both_replicas_have_the_rows(cluster_config, cluster_backends):
    replica_1, replica_2 = cluster_backends
    create_schema(replica_1, cluster=cluster_config["cluster"])
    backend = build_backend(failover_config(cluster_config, replica_1.database, cluster_config["urls"],
                                            insert_quorum=2))
    dump_id = new_dump_id()

    insert_blocks(backend, dump_id, 1, 2)

    # No waiting for replication: the quorum answered only once replica 2 had the rows too.
    assert [row["order"] for row in select_blocks(replica_2, dump_id)] == [1, 2]
    assert [row["order"] for row in select_blocks(replica_1, dump_id)] == [1, 2]


@pytest.mark.slow
def test_insert_quorum_with_a_replica_down_is_refused_not_failed_over(cluster_config, cluster_backends, caplog):
    """Replica 1 answers (too few replicas alive): an error to wait out, which pauses new claims."""
    caplog.set_level(logging.INFO)
    replica_1, _ = cluster_backends
    create_schema(replica_1, cluster=cluster_config["cluster"])
    backend = build_backend(failover_config(cluster_config, replica_1.database, cluster_config["urls"],
                                            insert_quorum=2))
    backend.server_info()
    try:
        subprocess.run([str(CLUSTER_SCRIPT), "stop-replica", "2"], check=True, capture_output=True, timeout=120)  # noqa: S603

        with pytest.raises(ClickHouseRejected) as caught:
            insert_blocks(backend, new_dump_id(), 1)
    finally:
        subprocess.run([str(CLUSTER_SCRIPT), "start-replica", "2"], check=True, capture_output=True, timeout=180)  # noqa: S603

    error = caught.value
    assert error.code == 285  # TOO_FEW_LIVE_REPLICAS
    assert error.retryable and is_server_wide(error)
    assert describe_failure(code=error.code) == "Too few ClickHouse replicas were up for insert_quorum."
    assert backend.current.address == replica_1.address
    assert not [record for record in caplog.records if "unavailable" in record.getMessage()]
    assert cluster_config["password"] not in str(error)
