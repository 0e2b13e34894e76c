"""
Claims that die with their claimer (outbox.liveness), on the database named by DATABASE_URL
with its real locks: a run's lock is a session advisory lock (PostgreSQL) or GET_LOCK
(MariaDB) on a connection of its own, or an flock()ed file beside the SQLite database.

The claims (batches, requested snapshots, dump subjects) of a run whose lock is gone are
taken at once, while their lease (300 s) still runs; those of a run that holds its lock,
or that holds none, are not. A lock is made to go here by closing its run (the lock given
back, as after a run whose last update failed) or by ending it from the server's side
(tests/claim_locks.end_lock); processes killed with SIGKILL are in
tests/faults/test_dead_drainer.py.
"""

import threading
import uuid

import pytest
from django.db import connection

from clickhouse_outbox.db import retry_lock_conflicts
from clickhouse_outbox.dumps.jobs import start_job
from clickhouse_outbox.dumps.run import Producers, claim_items, plan
from clickhouse_outbox.models import Batch, DumpJob, DumpJobItem, Snapshot
from clickhouse_outbox.outbox import drain as draining
from clickhouse_outbox.outbox import liveness
from clickhouse_outbox.outbox.claim import claim_batch
from clickhouse_outbox.outbox.drain import drain
from clickhouse_outbox.outbox.finalise import mark_sent
from clickhouse_outbox.outbox.requested import claim_requests, request_snapshot
from tests.admin import pages
from tests.admin.helpers import url
from tests.claim_locks import end_lock
from tests.dumps.helpers import add_courses
from tests.factories import CourseSnapshotFactory, with_source
from tests.faults.helpers import TABLES, ch_count

pytestmark = pytest.mark.django_db(transaction=True)  # the locks live on connections of their own

WAIT = 10


def rows_in_clickhouse(backend):
    return sum(ch_count(backend, table.name) for table in TABLES)


def claim_all(owner):
    """Every batch there is to claim, claimed by `owner` (a snapshot makes one per table)."""
    batches = []
    while (batch := claim_batch(owner)) is not None:
        batches.append(batch)
    return batches


def test_an_owner_id_names_its_runs_lock_and_a_random_one_names_none():
    key = liveness.new_key()
    first, second = liveness.owner_id(key), liveness.owner_id(key)
    assert first != second  # one per drain loop of a run
    assert liveness.key_of(first) == liveness.key_of(str(second)) == key
    assert str(first)[14:18] == "7c1a" and first.version == 7  # what MariaDB's UUID column accepts
    assert liveness.key_of(uuid.uuid4()) is None  # an older release's owner, or a run without a lock
    assert liveness.abandoned({uuid.uuid4()}) == set()


def test_a_drainers_batch_is_never_taken_while_it_holds_its_lock_and_at_once_when_the_lock_is_gone():
    CourseSnapshotFactory(course__blocks=5)
    with liveness.claiming("the other drainer") as other:
        with liveness.claiming("the first drainer") as first:
            assert first.has_lock and other.has_lock
            owner = first.owner()
            batches = claim_all(owner)
            assert len(batches) == 3  # one per table
            assert claim_batch(other.owner()) is None  # its lock is held: its batches are not due
            assert liveness.abandoned({owner}) == set()
        # The first drainer's lock is given back with its batches still claimed (its last updates failed).
        taken = claim_all(other.owner())
    assert [batch.pk for batch in taken] == [batch.pk for batch in batches]
    assert {(batch.attempts, liveness.key_of(batch.lease_owner)) for batch in taken} == {(2, other.key)}
    assert all(batch.lease_expires_at > before.lease_expires_at for batch, before in zip(taken, batches, strict=True))
    assert mark_sent(batches[0], owner) is False  # the first drainer can no longer finalise them


@pytest.mark.parametrize("how", ["ended_by_the_server", "given_back"])
def test_a_batch_is_taken_once_whatever_the_number_of_drainers_that_find_its_drainer_gone(how):
    """Eight drainers (threads, a connection each) claim at once: one of them takes the gone drainer's batch."""
    CourseSnapshotFactory(course__blocks=5)
    with liveness.claiming("the first drainer") as first:
        batches = claim_all(first.owner())
        if how == "ended_by_the_server":
            end_lock(batches[0].lease_owner)
    assert liveness.abandoned({batches[0].lease_owner}) == {batches[0].lease_owner}
    start, done, taken, errors = threading.Barrier(8), threading.Barrier(8), [], []

    def claimer():
        try:
            with liveness.claiming("a rival") as rival:
                owner = rival.owner()
                start.wait(WAIT)
                while (got := retry_lock_conflicts(claim_batch, owner)) is not None:
                    taken.append(got.pk)
                done.wait(WAIT)  # alive, with its lock, until every rival has claimed what it could
        except Exception as exc:  # noqa: BLE001 (reported by the test)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 3)
    assert not errors, errors
    assert sorted(taken) == sorted(batch.pk for batch in batches)  # each taken by one rival only
    assert set(Batch.objects.values_list("attempts", flat=True)) == {2}


def test_a_drainer_without_a_lock_keeps_its_batch_until_its_lease_ends(settings):
    """An owner id that names no lock (an older release, or CLICKHOUSE_OUTBOX_CLAIM_LOCKS off): the lease only."""
    CourseSnapshotFactory(course__blocks=5)
    settings.CLICKHOUSE_OUTBOX_CLAIM_LOCKS = False
    with liveness.claiming("a drainer without a lock") as first:
        assert not first.has_lock and first.holds()
        owner = first.owner()
        assert owner.version == 4
        assert len(claim_all(owner)) == 3
    settings.CLICKHOUSE_OUTBOX_CLAIM_LOCKS = True
    with liveness.claiming("the other drainer") as other:
        assert claim_batch(other.owner()) is None
    assert set(Batch.objects.values_list("lease_owner", flat=True)) == {owner}


def test_requested_snapshots_of_a_gone_drainer_are_taken_at_once():
    request_snapshot("course_structure", "course-v1:Liveness+R+1", "published")
    with liveness.claiming("the other drainer") as other:
        with liveness.claiming("the first drainer") as first:
            owner = first.owner()
            (held,) = claim_requests(owner, 10)
            assert claim_requests(other.owner(), 10) == []
            end_lock(owner)
        (taken,) = claim_requests(other.owner(), 10)
    assert taken.pk == held.pk
    assert liveness.key_of(Snapshot.objects.get(pk=held.pk).lease_owner) == other.key


def test_dump_subjects_of_a_gone_worker_are_claimed_at_once(olx_source, tmp_path):
    keys = add_courses(olx_source, tmp_path / "exports", 4)
    job = start_job(DumpJob.Scope.ALL, origin="test")
    plan(job, with_source(olx_source))
    with liveness.claiming("the other worker") as other:
        with liveness.claiming("the first worker") as first:
            held = claim_items(job, first.owner(), Producers(), 2)
            assert [row.subject for row in held] == keys[:2]
            assert [row.subject for row in claim_items(job, other.owner(), Producers(), 10)] == keys[2:]
            assert claim_items(job, other.owner(), Producers(), 10) == []
            end_lock(held[0].lease_owner)
        taken = claim_items(job, other.owner(), Producers(), 10)
    assert [row.id for row in taken] == [row.id for row in held]
    assert {liveness.key_of(row.lease_owner) for row in DumpJobItem.objects.filter(job=job)} == {other.key}


@pytest.mark.clickhouse_server
def test_a_drain_whose_lock_is_ended_between_claim_and_send_sends_nothing_and_leaves_the_batch(
    server_clickhouse, monkeypatch
):
    """
    The lock is ended from the server's side right after the drain's claim returns (the claim
    is wrapped to do it then: the moment is made certain, the fault is real). The drain asks
    for its lock right before the send: it sends nothing, gives the batch back (its attempt
    not counted), says why, and the next drain sends it once.
    """
    CourseSnapshotFactory(course__blocks=5)
    real_claim, ended = draining.claim_batch, []

    def claim_then_lose_the_lock(owner):
        batch = real_claim(owner)
        if batch is not None and not ended:
            end_lock(owner)
            ended.append(batch.pk)
        return batch

    monkeypatch.setattr(draining, "claim_batch", claim_then_lose_the_lock)
    result = drain()
    assert ended and result.lock_lost and not result.ok
    assert result.batches_sent == 0 and "its database lock was lost" in str(result)
    assert rows_in_clickhouse(server_clickhouse) == 0  # nothing was sent
    left = Batch.objects.get(pk=ended[0])
    # Given back unsent, its attempt not counted; and it stopped claiming too.
    assert (left.status, left.lease_owner, left.attempts, Batch.objects.count()) == (Batch.Status.RETRY, None, 0, 1)

    monkeypatch.setattr(draining, "claim_batch", real_claim)
    again = drain()
    assert again.ok and again.batches_sent == Batch.objects.count() == 3
    assert Batch.objects.get(pk=left.pk).attempts == 1
    assert rows_in_clickhouse(server_clickhouse) == sum(Batch.objects.values_list("row_count", flat=True))


def test_the_admin_says_whether_a_claimed_batchs_drainer_is_running_or_gone(admin_client):
    CourseSnapshotFactory(course__blocks=5)

    def lease_shown(batch):
        return pages.readonly_field(admin_client.get(url("batch_change", batch.pk)), "lease")

    with liveness.claiming("a drainer") as first:
        batch = claim_batch(first.owner())
        assert "that drainer is running" in lease_shown(batch)
    assert "that drainer is gone" in lease_shown(batch)
    without_lock = claim_batch(uuid.uuid4())
    assert "a drainer without a database lock" in lease_shown(without_lock)
