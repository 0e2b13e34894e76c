"""
Fault tests against the replicated test cluster (scripts/clickhouse-test-cluster: ZooKeeper
and two 18.16 replicas of one shard, ReplicatedMergeTree tables made ON CLUSTER).

18.16 has no deduplication token, but a replicated table drops a block it already has (the
block's hash is kept in ZooKeeper for the shard, whichever replica took it). The plugin
resends a batch as the same bytes, parsed as one block: so where the single old server keeps
an exact copy of every batch whose acknowledgement was lost, the cluster keeps none.

    (a) drainers SIGKILLed between claim and finalise, alternately through each replica,
        some exactly while the proxy holds ClickHouse's answer (committed, not acknowledged)
    (b) a read timeout or a dropped connection after the server committed, the batch resent
        through the same replica or through the other one
    (c) four drainer processes at once, two through each replica (as on several hosts)

Each ends with every row once on both replicas (compared after replication has caught up:
18.16 has no SYSTEM SYNC REPLICA, so the tests poll).
"""

import os
import random
import time
from collections import Counter

import pytest
from django.db import connection

from clickhouse_outbox.clickhouse.schema import create_schema
from clickhouse_outbox.clickhouse.tables import COURSE_BLOCKS
from clickhouse_outbox.models import Batch
from clickhouse_outbox.outbox.drain import drain
from tests.clickhouse_fixtures import replica_backend_config, replicas_agree
from tests.factories import CourseSnapshotFactory
from tests.faults.helpers import (
    TABLES,
    Drainer,
    assert_all_sent,
    assert_every_row_exactly_once,
    ch_count,
    drain_everything,
    leftover_claims_were_reclaimed,
    queued_rows,
    report,
    row_figures,
    run_drainers_until_empty,
)
from tests.processes import project_env
from tests.proxy import FaultProxy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.clickhouse_cluster, pytest.mark.slow]

SEED = int(os.environ.get("FAULTS_SEED", random.randrange(1_000_000)))
REPLICATION_WAIT = 30  # seconds
LEASE_SECS = 5
DRAINER_SETTINGS = {
    "CLICKHOUSE_OUTBOX_LEASE_SECS": LEASE_SECS,
    "CLICKHOUSE_TIMEOUT_SECS": 1.5,
    "CLICKHOUSE_OUTBOX_BATCH_ROWS": 64,
    "CLICKHOUSE_OUTBOX_BACKOFF_BASE_SECS": 0.1,
    "CLICKHOUSE_OUTBOX_BACKOFF_MAX_SECS": 0.5,
    "OUTBOX_LOG_LEVEL": "WARNING",
}
WAIT = 30


@pytest.fixture
def replicas(cluster_backends, cluster_config, settings):
    """
    [replica 1, replica 2] (HttpBackends on the test's database) with the contract's tables made
    ON CLUSTER; the plugin's settings point at replica 1 (tests repoint them).
    """
    create_schema(cluster_backends[0], cluster=cluster_config["cluster"])
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = replica_backend_config(
        cluster_config, 0, cluster_backends[0].database
    )
    return cluster_backends


def replica_config(cluster_config, replicas, index, **overrides):
    return dict(replica_backend_config(cluster_config, index, replicas[0].database), **overrides)


def wait_for_replication(backends, timeout=REPLICATION_WAIT):
    """Per replica {table: rows} once the replicas agree on every course table and have nothing queued."""
    return replicas_agree(backends, [table.name for table in TABLES], timeout)


def assert_once_on_every_replica(backends):
    wait_for_replication(backends)
    figures = [assert_every_row_exactly_once(backend) for backend in backends]
    assert figures[0] == figures[1]
    return figures[0]


@pytest.fixture
def proxies(cluster_config):
    """A FaultProxy in front of each replica, faulting only INSERTs."""
    opened = [FaultProxy(url, match=b"INSERT") for url in cluster_config["urls"]]
    try:
        yield opened
    finally:
        for proxy in opened:
            proxy.close()


def claimed_now():
    return set(Batch.objects.filter(status=Batch.Status.CLAIMED).values_list("id", "attempts"))


def wait_until(condition, drainer, timeout=WAIT, poll=0.002):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if not drainer.running():
            return False
        time.sleep(poll)
    return False


def answer_held(proxy, base):
    """An INSERT the server has answered (so committed) whose answer the proxy still holds."""
    return any(e.answered is not None and e.delivered is None for e in proxy.matched_exchanges()[base:])


# -- (a) SIGKILL between claim and finalise --------------------------------------------------

SIGKILL_TRIALS = 10


def test_sigkill_between_claim_and_finalise_leaves_no_duplicate_on_the_cluster(
    replicas, cluster_config, proxies, settings, tmp_path
):
    rng = random.Random(SEED)
    settings.CLICKHOUSE_OUTBOX_BATCH_ROWS = DRAINER_SETTINGS["CLICKHOUSE_OUTBOX_BATCH_ROWS"]
    snapshots = [CourseSnapshotFactory(course__blocks=30) for _ in range(100)]
    envs = [
        project_env(replica_config(cluster_config, replicas, index, url=proxy.url), **DRAINER_SETTINGS)
        for index, proxy in enumerate(proxies)
    ]
    for proxy in proxies:
        proxy.delay_response((0.15, 0.4))  # a window in which the server has committed, the drainer not heard

    phases, trials, left_by_trials = Counter(), [], 0
    started = time.monotonic()
    for trial in range(SIGKILL_TRIALS):
        index = trial % 2  # alternately through replica 1 and replica 2: a resend often goes to the other one
        proxy = proxies[index]
        trigger = "answer_held" if trial % 3 != 2 else "random_after_insert"
        base = len(proxy.matched_exchanges())
        claimed_before = claimed_now()
        k, delay = rng.randint(1, 3), rng.uniform(0, 0.45)
        drainer = Drainer("outbox_drain", "--until-empty", "--timeout", "60", env=envs[index],
                          log_path=tmp_path / f"trial-{trial}.log")
        try:
            if trigger == "answer_held":
                # Let k-1 batches through, then kill while the k-th batch's answer is held.
                wait_until(lambda: len(proxy.matched_exchanges()) >= base + k, drainer, poll=0.001)  # noqa: B023
                held = wait_until(lambda: answer_held(proxy, base + k - 1), drainer, poll=0.001)  # noqa: B023
                delay = 0
            else:
                wait_until(lambda: len(proxy.matched_exchanges()) >= base + k, drainer, poll=0.001)  # noqa: B023
                time.sleep(delay)
                held = answer_held(proxy, base)
            running = drainer.running()
            drainer.kill()
        finally:
            drainer.kill()
        left = claimed_now() - claimed_before
        left_by_trials += len(left)
        assert len(left) <= 1, left
        if not running:
            phase = "drainer_had_finished"
        elif held:
            phase = "committed_ack_held"
        elif left:
            phase = "claimed_not_finalised"
        else:
            phase = "between_batches"
        phases[phase] += 1
        trials.append((f"replica {index + 1}", trigger, k, round(delay, 3), phase))
    trials_secs = time.monotonic() - started
    assert phases["committed_ack_held"] >= 3, trials  # else the resend of a committed batch was not tested

    for proxy in proxies:
        proxy.pass_through()
    # The rest, and every batch a killed drainer left, through replica 2 (after the leases end).
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = replica_config(cluster_config, replicas, 1)
    drain_everything(timeout=60)

    assert_all_sent()
    leftover_claims_were_reclaimed(left_by_trials)
    figures = assert_once_on_every_replica(replicas)
    attempts = Counter(Batch.objects.values_list("attempts", flat=True))
    report(
        f"cluster_sigkill[2 x 18.16 replicated, {connection.vendor}]",
        seed=SEED,
        trials=SIGKILL_TRIALS,
        phases=dict(phases),
        trial_log=trials,
        trials_secs=round(trials_secs, 1),
        snapshots=len(snapshots),
        **row_figures(figures),
        replicas_compared=len(replicas),
        batches=Batch.objects.count(),
        batches_resent=sum(n for a, n in attempts.items() if a > 1),
        attempts_histogram=dict(attempts),
    )


# -- (b) a timeout after the server committed -------------------------------------------------

READ_TIMEOUT = 1
HOLD = 3  # longer than READ_TIMEOUT


def course_blocks_insert(head):
    first_line = head.split(b"\r\n", 1)[0]
    return b"query=INSERT" in first_line and b"course_blocks" in first_line


@pytest.mark.parametrize(
    ("fault", "resend_through"),
    [("answer_held_past_timeout", "replica 1"), ("connection_closed_after_commit", "replica 2")],
)
def test_a_lost_acknowledgement_is_resent_and_dropped_by_the_cluster(
    fault, resend_through, replicas, cluster_config, proxies, fast_retries, settings
):
    first_proxy = proxies[0]
    first_proxy.match = course_blocks_insert
    if fault == "answer_held_past_timeout":
        first_proxy.delay_response(HOLD)
    else:
        first_proxy.drop(after_commit=True)
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = replica_config(
        cluster_config, replicas, 0, url=first_proxy.url, timeout_secs=READ_TIMEOUT
    )
    snapshots = [CourseSnapshotFactory(course__blocks=20) for _ in range(3)]

    result = drain()
    assert (result.batches_sent, result.batches_retrying) == (1, 1), result
    batch = Batch.objects.get(table=COURSE_BLOCKS.name)
    assert (batch.status, batch.attempts) == (Batch.Status.RETRY, 1)
    (exchange,) = first_proxy.matched_exchanges()
    assert exchange.answered is not None  # the server answered: the batch is committed
    assert ch_count(replicas[0], COURSE_BLOCKS.name) == batch.row_count

    resend_proxy = proxies[0] if resend_through == "replica 1" else proxies[1]
    first_proxy.pass_through()
    resend_proxy.match = course_blocks_insert
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = replica_config(
        cluster_config, replicas, proxies.index(resend_proxy), url=resend_proxy.url, timeout_secs=READ_TIMEOUT
    )
    drain_everything(timeout=30, poll_interval=0.1)

    assert_all_sent()
    batch.refresh_from_db()
    assert batch.attempts == 2
    sends = [exchange.parsed() for proxy in proxies for exchange in proxy.matched_exchanges()]
    assert len(sends) == 2
    first, resend = sends
    assert resend.body == first.body  # the same bytes ...
    assert resend.params == first.params  # ... with the same settings (max_insert_block_size among them)
    assert int(first.params["max_insert_block_size"]) >= batch.row_count
    figures = assert_once_on_every_replica(replicas)
    assert figures[COURSE_BLOCKS.name] == (batch.row_count,) * 3
    report(
        f"cluster_timeout_after_commit[{fault}, resent through {resend_through}]",
        snapshots=len(snapshots),
        **row_figures(figures),
        replicas_compared=len(replicas),
        resent_batch_rows=batch.row_count,
        resent_batch_attempts=batch.attempts,
        resend_identical=resend.body == first.body and resend.params == first.params,
    )


# -- (c) several drainer processes, through both replicas -------------------------------------

DRAINERS = 4
COURSES = 100
BLOCKS = 30
BATCH_ROWS = 200


def test_drainers_on_several_hosts_through_both_replicas_send_every_row_once(
    replicas, cluster_config, settings, tmp_path
):
    settings.CLICKHOUSE_OUTBOX_BATCH_ROWS = BATCH_ROWS
    snapshots = [CourseSnapshotFactory(course__blocks=BLOCKS) for _ in range(COURSES)]
    total_rows = sum(snapshot.row_count for snapshot in snapshots)
    envs = [
        project_env(
            replica_config(cluster_config, replicas, index % 2),
            CLICKHOUSE_OUTBOX_BATCH_ROWS=BATCH_ROWS,
            CLICKHOUSE_OUTBOX_LEASE_SECS=60,  # no lease runs out: an overlap could only come from the claim
            OUTBOX_LOG_LEVEL="WARNING",
        )
        for index in range(DRAINERS)
    ]

    outputs, elapsed = run_drainers_until_empty(envs, tmp_path)
    assert_all_sent()
    assert set(Batch.objects.values_list("attempts", flat=True)) == {1}
    figures = assert_once_on_every_replica(replicas)
    assert sum(queued for queued, _, _ in figures.values()) == total_rows
    report(
        f"cluster_concurrent_drainers[{connection.vendor}, {DRAINERS} drainers, 2 through each replica]",
        drainers=DRAINERS,
        **row_figures(figures),
        replicas_compared=len(replicas),
        batches=Batch.objects.count(),
        course_blocks_rows=queued_rows(COURSE_BLOCKS.name),
        elapsed_secs=round(elapsed, 1),
    )
