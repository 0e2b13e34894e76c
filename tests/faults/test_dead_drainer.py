"""
Issue 18, item 7: a drainer's batch is taken again within seconds when the drainer dies,
never while it lives. Real processes (`manage.py outbox_drain --until-empty`), SIGKILL, the
test database (SQLite file, MariaDB, PostgreSQL) and the real ClickHouse test server, with
the default 300-second lease.

A drainer's send is held mid-way by a FaultProxy in front of the server (hold_response: the
server has the INSERT and answers; the proxy keeps the answer from the drainer, which stays
alive, until the test releases it). Then:

* killed: the drainer is SIGKILLed mid-send while a second drainer runs; the second sends the
  batch well before the dead one's lease ends. The time from the SIGKILL to the batch sent
  is reported (FAULTS lines, `pytest -s`): the recovery time.
* alive: three other drainers race through forty batches while the held one lives; none
  of them takes its batch (the test's own claims do not either), and once released it sends
  it itself: every row is in ClickHouse exactly once (the old server does not deduplicate,
  so a second send would show).
* lock ended: the drainer's lock session is ended from the server's side (PostgreSQL's
  pg_terminate_backend, MariaDB's KILL; on SQLite its lock file is removed) while its send
  is held. Once released, it finalises that send (its lease is still its own) and then
  sends and claims nothing more: it stops, says why, and exits 1. The rest is drained after.
"""

import time

import pytest
from django.db import connection

from clickhouse_outbox.db import db_now
from clickhouse_outbox.models import Batch, OutboxEntry
from clickhouse_outbox.outbox import liveness
from clickhouse_outbox.outbox.claim import claim_batch
from tests.claim_locks import end_lock
from tests.factories import CourseSnapshotFactory
from tests.faults.helpers import (
    Drainer,
    assert_all_sent,
    assert_every_row_at_least_once_and_duplicates_exact,
    assert_every_row_exactly_once,
    drain_everything,
    report,
    row_figures,
)
from tests.processes import project_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.clickhouse_server]

LEASE_SECS = 300  # the default: a recovery that waited for it would not finish within WAIT
WAIT = 60
# A held send must not time out meanwhile: the read timeout is raised (still under the lease: check E011).
DRAINER_SETTINGS = {"CLICKHOUSE_OUTBOX_LEASE_SECS": LEASE_SECS, "CLICKHOUSE_TIMEOUT_SECS": 4 * WAIT,
                    "OUTBOX_LOG_LEVEL": "INFO"}


def wait_for(condition, what, *alive, timeout=WAIT, poll=0.005):
    """Poll `condition` until it returns something true (returned); fail if time runs out or a drainer in `alive` ended."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        for drainer in alive:
            assert drainer.running(), f"a drainer ended while waiting for {what}:\n{drainer.output()}"
        assert time.monotonic() < deadline, f"no {what} within {timeout}s"
        time.sleep(poll)


def held_claim(proxy, drainer):
    """Wait until `drainer` has a send held at `proxy`; its batch (claimed, attempt 1)."""
    wait_for(lambda: proxy.matched_exchanges(), "INSERT held at the proxy", drainer)
    (batch,) = Batch.objects.filter(status=Batch.Status.CLAIMED)
    assert batch.attempts == 1 and liveness.key_of(batch.lease_owner) is not None
    return batch


def sent(pk):
    return Batch.objects.filter(pk=pk, status=Batch.Status.SENT).exists()


def test_a_killed_drainers_batch_is_sent_by_another_drainer_within_seconds_not_after_its_lease(
    server_clickhouse, fault_proxy, settings, tmp_path
):
    CourseSnapshotFactory(course__blocks=20)  # three batches, one per table
    through_proxy = project_env(dict(settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG, url=fault_proxy.url),
                                **DRAINER_SETTINGS)
    direct = project_env(settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG, **DRAINER_SETTINGS)
    fault_proxy.hold_response()
    dying = Drainer("outbox_drain", "--until-empty", "--timeout", str(WAIT), env=through_proxy,
                    log_path=tmp_path / "dying.log")
    other = None
    try:
        batch = held_claim(fault_proxy, dying)
        lease_ends = batch.lease_expires_at
        other = Drainer("outbox_drain", "--until-empty", "--timeout", str(WAIT), env=direct,
                        log_path=tmp_path / "other.log")
        # The other drainer sends the two other tables' batches, then waits for the held one.
        wait_for(lambda: Batch.objects.filter(status=Batch.Status.SENT).count() == 2, "two batches sent", other, dying)
        assert not sent(batch.pk) and Batch.objects.get(pk=batch.pk).lease_owner == batch.lease_owner

        killed_at = time.monotonic()
        dying.kill()
        wait_for(lambda: sent(batch.pk), "held batch sent by the other drainer", other, poll=0.002)
        recovery = time.monotonic() - killed_at
        assert other.wait(timeout=WAIT) == 0, other.output()
    finally:
        fault_proxy.release_held()
        dying.kill()
        if other is not None:
            other.kill()

    resent = Batch.objects.get(pk=batch.pk)
    assert resent.attempts == 2  # the dead drainer's claim, then the other's
    assert resent.sent_at < lease_ends  # taken long before the dead drainer's 300 s lease ended
    lease_left = (lease_ends - db_now()).total_seconds()
    assert lease_left > LEASE_SECS - WAIT
    assert_all_sent()
    # The server had committed the held INSERT: the old server stores the resend as an exact copy.
    figures, copies = assert_every_row_at_least_once_and_duplicates_exact(server_clickhouse)
    report(f"dead drainer recovery[{connection.vendor}]", recovery_secs=round(recovery, 3),
           lease_secs=LEASE_SECS, lease_left_secs=round(lease_left, 1), **row_figures(figures),
           copies={table: dict(counter) for table, counter in copies.items()})


def test_a_live_drainer_whose_send_stalls_keeps_its_batch_while_three_others_drain_the_rest(
    server_clickhouse, fault_proxy, settings, tmp_path
):
    settings.CLICKHOUSE_OUTBOX_BATCH_ROWS = 64  # about forty batches to race on
    for _ in range(40):
        CourseSnapshotFactory(course__blocks=30)
    extra = dict(DRAINER_SETTINGS, CLICKHOUSE_OUTBOX_BATCH_ROWS=64, OUTBOX_LOG_LEVEL="WARNING")
    through_proxy = project_env(dict(settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG, url=fault_proxy.url), **extra)
    direct = project_env(settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG, **extra)
    fault_proxy.hold_response()
    stalled = Drainer("outbox_drain", "--until-empty", "--timeout", str(WAIT * 2), env=through_proxy,
                      log_path=tmp_path / "stalled.log")
    others = []
    try:
        batch = held_claim(fault_proxy, stalled)
        others = [Drainer("outbox_drain", "--until-empty", "--timeout", str(WAIT * 2), env=direct,
                          log_path=tmp_path / f"other-{n}.log") for n in range(3)]

        def all_but_the_held_one_sent():
            return (not OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING).exists()
                    and set(Batch.objects.exclude(status=Batch.Status.SENT).values_list("id", flat=True)) == {batch.pk})

        wait_for(all_but_the_held_one_sent, "every other batch sent", stalled, *others, timeout=WAIT * 2)
        # The others keep polling (until-empty: the held batch is still open), and this process claims too.
        with liveness.claiming("the test's own drainer") as own:
            for _ in range(20):
                assert claim_batch(own.owner()) is None
                time.sleep(0.1)
        held = Batch.objects.get(pk=batch.pk)
        assert (held.status, held.lease_owner, held.attempts) == (Batch.Status.CLAIMED, batch.lease_owner, 1)
        assert stalled.running() and all(other.running() for other in others)

        fault_proxy.release_held()
        codes = [drainer.wait(timeout=WAIT) for drainer in (stalled, *others)]
        assert codes == [0] * 4, "\n".join(drainer.output() for drainer in (stalled, *others))
    finally:
        fault_proxy.release_held()
        for drainer in (stalled, *others):
            drainer.kill()

    assert_all_sent()
    assert set(Batch.objects.values_list("attempts", flat=True)) == {1}  # no batch was ever claimed twice
    figures = assert_every_row_exactly_once(server_clickhouse)  # the old server keeps every copy: none was sent twice
    report(f"live stalled drainer[{connection.vendor}]", batches=Batch.objects.count(), drainers=4,
           **row_figures(figures))


def test_a_drainer_whose_lock_is_ended_from_the_server_sends_nothing_more_and_says_why(
    server_clickhouse, fault_proxy, settings, tmp_path
):
    CourseSnapshotFactory(course__blocks=20)  # three batches, one per table
    env = project_env(dict(settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG, url=fault_proxy.url), **DRAINER_SETTINGS)
    fault_proxy.hold_response()
    drainer = Drainer("outbox_drain", "--until-empty", "--timeout", str(WAIT), env=env, log_path=tmp_path / "drainer.log")
    try:
        batch = held_claim(fault_proxy, drainer)
        end_lock(batch.lease_owner)  # a DBA's kill, a failover: the drainer's main connection is untouched
        fault_proxy.release_held()  # its INSERT was already on the wire: it completes
        code = drainer.wait(timeout=WAIT)
    finally:
        fault_proxy.release_held()
        drainer.kill()
    output = drainer.output()
    assert code == 1, output
    assert "lost its database lock" in output, output
    assert len(fault_proxy.matched_exchanges()) == 1  # not one INSERT after the lock was ended
    assert list(Batch.objects.values_list("id", "status", "attempts")) == [(batch.pk, Batch.Status.SENT, 1)]
    assert OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING).exists()  # it claimed nothing more

    drain_everything(timeout=WAIT)
    assert_all_sent()
    assert_every_row_exactly_once(server_clickhouse)
