"""
Fault test: a replica of the ClickHouse cluster stops in the middle of a drain.

100 courses are queued and a `manage.py outbox_drain --until-empty` process sends them in
small batches to the two replicas of the test cluster (`urls`), replica 1 first. Once some
batches are sent, replica 1 is stopped: the drain goes on through replica 2 without
spending an attempt (every batch is sent at its first attempt), and replica 2 has every row
once. Replica 1 then starts again and catches up from replica 2: every row once there too.

Replication is asynchronous (no insert_quorum here: with one replica down a quorum of two
could not be met), so a batch replica 1 acknowledged a moment before it stopped may not have
reached replica 2 yet; it would be there once replica 1 is back, not while it is down. To
check "replica 2 has every row" while replica 1 is down without that race, the drainer is
paused (SIGSTOP) while replica 1 finishes what it received (no unread request bytes on
its connections, no INSERT running), replica 2 catches up and replica 1 stops; then the
drainer resumes (SIGCONT) and meets the stopped replica with its next request. The stop is a real SIGTERM of the real server (scripts/clickhouse-test-cluster).
"""

import os
import random
import re
import signal
import subprocess
import time
from datetime import datetime

import pytest
import requests

from clickhouse_outbox.clickhouse.backends.base import quote_string
from clickhouse_outbox.clickhouse.schema import create_schema
from clickhouse_outbox.models import Batch
from tests.factories import CourseSnapshotFactory
from tests.faults.helpers import (
    TABLES,
    Drainer,
    assert_all_sent,
    assert_every_row_exactly_once,
    ch_count,
    queued_rows,
    report,
    row_figures,
)
from tests.processes import ROOT, project_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.clickhouse_cluster, pytest.mark.slow]

COURSES = 100
BATCH_ROWS = 10  # about one course's blocks per batch: some 200 batches, so the stop falls mid-drain
SENT_BEFORE_STOP = 10  # batches sent through replica 1 before it is stopped
CLUSTER_SCRIPT = ROOT / "scripts" / "clickhouse-test-cluster"
# The drainer's log lines (outbox_project's LOGGING: "%(asctime)s %(levelname)s %(name)s: %(message)s").
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
SENT_LINE = re.compile(r"sent batch (\d+) to ")


def cluster_script(*args):
    done = subprocess.run(  # noqa: S603 (our own script)
        [str(CLUSTER_SCRIPT), *args], capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, f"clickhouse-test-cluster {' '.join(args)} failed: {done.stdout}{done.stderr}"


def is_up(url):
    try:
        return requests.get(f"{url.rstrip('/')}/ping", timeout=2).ok
    except requests.RequestException:
        return False


def poll(condition, what, timeout):
    """Wait until `condition()` is true; fail saying `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.1)


def counts(backend):
    return {table.name: ch_count(backend, table.name) for table in TABLES}


def inserts_running(backend):
    """INSERTs into the test's database that the replica is still executing."""
    rows = backend.query(
        "SELECT count() AS n FROM system.processes WHERE query LIKE 'INSERT%' "
        f"AND position(query, {quote_string(backend.database)}) > 0"
    )
    return int(rows[0]["n"])


def unread_request_bytes(port):
    """
    Bytes that reached the server's end of a loopback connection on `port` but that the
    server has not read yet (rx_queue in /proc/net/tcp): a request still on its way in.
    """
    unread = 0
    for line in open("/proc/net/tcp").read().splitlines()[1:]:  # noqa: SIM115 (a kernel table, read at once)
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == "01":  # ESTABLISHED
            unread += int(fields[4].split(":")[1], 16)
    return unread


def replica_1_is_quiet(replica_1, replica_2, port):
    """
    Replica 1 has read every request sent to it, runs no INSERT of the test, and replica 2
    has every row replica 1 has: stopping replica 1 now loses no acknowledged row on replica 2.
    """
    return (
        unread_request_bytes(port) == 0
        and inserts_running(replica_1) == 0
        and counts(replica_2) == counts(replica_1)
    )


def log_time(line):
    """The wall-clock time a drainer log line was written (both processes run in UTC: TIME_ZONE)."""
    match = LOG_TIME.match(line)
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() if match else None


def test_a_replica_stopped_mid_drain_loses_nothing_spends_no_attempt_and_catches_up(
    cluster_config, cluster_backends, settings, tmp_path
):
    replica_1, replica_2 = cluster_backends
    url_1, url_2 = cluster_config["urls"][:2]
    address_1, address_2 = url_1.removeprefix("http://"), url_2.removeprefix("http://")
    create_schema(replica_1, cluster=cluster_config["cluster"])
    config = {
        "urls": [url_1, url_2],
        "username": cluster_config["username"],
        "password": cluster_config["password"],
        "database": replica_1.database,
        "timeout_secs": 10,
        "connect_timeout_secs": 3,
    }
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = config
    rng = random.Random(8)
    snapshots = [CourseSnapshotFactory(course__blocks=rng.randint(4, 15)) for _ in range(COURSES)]
    env = project_env(config, CLICKHOUSE_OUTBOX_BATCH_ROWS=BATCH_ROWS)

    drainer = Drainer("outbox_drain", "--until-empty", "--timeout", "180", env=env, log_path=tmp_path / "drain.log")
    paused = False
    try:
        poll(lambda: Batch.objects.filter(status=Batch.Status.SENT).count() >= SENT_BEFORE_STOP,
             f"{SENT_BEFORE_STOP} batches sent", timeout=120)
        os.kill(drainer.pid, signal.SIGSTOP)
        paused = True
        paused_at = time.monotonic()
        log_before_stop = drainer.output()
        port_1 = int(url_1.rsplit(":", 1)[1])
        quiet = []  # twice in a row: a request read but not yet listed as running shows the second time
        poll(lambda: quiet.append(replica_1_is_quiet(replica_1, replica_2, port_1)) or quiet[-2:] == [True, True],
             "replica 1 finished what it received and replica 2 caught up", timeout=120)
        rows_at_stop = sum(counts(replica_1).values())
        stop_started = time.monotonic()
        cluster_script("stop-replica", "1")
        stop_secs = time.monotonic() - stop_started
        assert not is_up(url_1)
        resumed_wall = time.time()
        os.kill(drainer.pid, signal.SIGCONT)
        paused = False
        paused_secs = time.monotonic() - paused_at

        exit_code = drainer.wait(timeout=240)
        drain_secs = time.monotonic() - drainer.started
        output = drainer.output()
        assert exit_code == 0, output

        # The drain went on through replica 2: the failover is logged, then batches were sent.
        lines = output.splitlines()
        unavailable = [i for i, line in enumerate(lines) if f"replica {address_1} is unavailable" in line]
        took = [i for i, line in enumerate(lines) if f"replica {address_2} took the INSERT" in line]
        assert unavailable and took and unavailable[0] < took[0], output
        assert f"trying replica {address_2}" in lines[unavailable[0]]
        assert cluster_config["password"] not in output
        sent_before = {int(m.group(1)) for line in log_before_stop.splitlines() if (m := SENT_LINE.search(line))}
        sent_after = {int(m.group(1)) for line in lines[took[0]:] if (m := SENT_LINE.search(line))}
        assert sent_before and sent_after and not sent_before & sent_after
        failover_secs = log_time(lines[took[0]]) - resumed_wall

        # Nothing spent an attempt while replica 2 answered, and all of it is on replica 2, once.
        assert_all_sent()
        assert set(Batch.objects.values_list("attempts", flat=True)) == {1}
        figures_2 = assert_every_row_exactly_once(replica_2)
        assert rows_at_stop < sum(found for _, found, _ in figures_2.values())  # rows replica 1 never saw

        # Replica 1 comes back and fetches what it missed from replica 2.
        restart_started = time.monotonic()
        cluster_script("start-replica", "1")
        expected = {table.name: queued_rows(table.name) for table in TABLES}
        poll(lambda: counts(replica_1) == expected, "replica 1 caught up after its restart", timeout=180)
        catch_up_secs = time.monotonic() - restart_started
        figures_1 = assert_every_row_exactly_once(replica_1)
    finally:
        if paused:
            os.kill(drainer.pid, signal.SIGCONT)
        if drainer.running():
            drainer.kill()
        if not is_up(url_1):
            cluster_script("start-replica", "1")

    report(
        "failover",
        courses=len(snapshots),
        batches=Batch.objects.count(),
        batches_sent_before_stop=len(sent_before),
        batches_sent_after_failover=len(sent_after),
        max_attempts=max(Batch.objects.values_list("attempts", flat=True)),
        replica_stop_secs=round(stop_secs, 2),
        drainer_paused_secs=round(paused_secs, 2),
        failover_to_next_insert_secs=round(failover_secs, 3),
        drain_secs=round(drain_secs, 1),
        replica_1_catch_up_secs=round(catch_up_secs, 1),
        replica_1=row_figures(figures_1),
        replica_2=row_figures(figures_2),
    )
