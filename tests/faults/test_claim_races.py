"""
Two claim races the four-drainer test (test_concurrent_drainers.py) runs into by chance on
MariaDB, made deterministic: a second claimer, on a connection of its own (a thread), does
its part exactly between two statements of the claim under test.

Only where drainers claim with SKIP LOCKED (PostgreSQL, MariaDB); SQLite's compare-and-swap
claim has no locks to race on.
"""

import threading
import time
import uuid

import pytest
from django.db import DatabaseError, connection, transaction

from clickhouse_outbox.models import Batch
from clickhouse_outbox.outbox import claim
from clickhouse_outbox.outbox.finalise import mark_sent
from tests.factories import CourseSnapshotFactory

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 10


@pytest.fixture(autouse=True)
def _skip_locked_only():
    if not claim.skip_locked():
        pytest.skip(f"{connection.vendor} claims by compare-and-swap: no row locks to race on")


class OtherClaimer(threading.Thread):
    """
    Another drainer: runs `work` on a connection of its own (a thread), records its result
    or error. With `hold`, in a transaction kept open until `finish()`.
    """

    def __init__(self, work, hold=False):
        super().__init__(daemon=True)
        self.work, self.hold = work, hold
        self.result, self.error = None, None
        self.ready, self.release = threading.Event(), threading.Event()

    def run(self):
        try:
            if self.hold:
                with transaction.atomic():
                    self.result = self.work()
                    self.ready.set()
                    self.release.wait(WAIT)
            else:
                self.result = self.work()
        except Exception as exc:  # noqa: BLE001 (reported by the test)
            self.error = exc
        finally:
            self.ready.set()
            connection.close()

    def finish(self):
        self.release.set()
        self.join(WAIT)
        assert not self.is_alive()


def test_a_new_claim_never_makes_an_empty_batch_when_another_claimer_holds_the_rest_of_the_table(
    monkeypatch, settings
):
    settings.CLICKHOUSE_OUTBOX_ENTRY_MAX_BYTES = 2048  # many entries: the plans of a real outbox
    for _ in range(30):
        CourseSnapshotFactory(course__blocks=20)
    first = claim.pending_entries().order_by("id").first()
    other = OtherClaimer(lambda: list(
        claim.pending_entries().select_for_update(skip_locked=True).filter(table=first.table)
        .order_by("id").values_list("id", flat=True)[: claim.MAX_ENTRIES_PER_BATCH]
    ), hold=True)
    real_batch_members = claim.batch_members

    def after_the_first_entry_is_locked(candidates):
        # claim_new_batch has picked its table (the oldest pending entry's); the
        # candidates (a lazy queryset) are read only now. Another claimer takes the rest
        # (once: a claim that finds nothing looks again).
        if other.ident is None:
            other.start()
            assert other.ready.wait(WAIT)
        return real_batch_members(candidates)

    monkeypatch.setattr(claim, "batch_members", after_the_first_entry_is_locked)
    try:
        batch = claim.claim_new_batch(uuid.uuid4())
    finally:
        other.finish()
    assert other.error is None
    assert other.result  # the race happened: the other claimer locked the table's entries meanwhile
    empty = list(Batch.objects.filter(entries__isnull=True))
    assert not empty, f"claim_new_batch made a batch with no entries: {empty}"
    if batch is not None:
        assert not set(batch.entries.values_list("id", flat=True)) & set(other.result)


@pytest.mark.parametrize("lease", ["lapsed", "live"])
def test_a_drainer_finalising_its_batch_does_not_deadlock_with_another_drainers_claim(settings, lease):
    """
    mark_sent's UPDATE (by primary key) locks the batch row, then changes its indexed
    status; another drainer's claim_batch once began with an UPDATE that walked the
    (status, lease_expires_at) index (expiring dead batches), and deadlocked with it. Here the finaliser takes the same row lock a
    moment earlier (in a transaction), so the other claim runs in between, as it can
    within the single statement.
    """
    settings.CLICKHOUSE_OUTBOX_LEASE_SECS = 1 if lease == "lapsed" else 300
    for _ in range(2):
        CourseSnapshotFactory(course__blocks=10)
    owner = uuid.uuid4()
    batch = claim.claim_batch(owner)
    if lease == "lapsed":  # a slow but live drainer whose lease has just run out
        deadline = time.monotonic() + WAIT
        while not claim.due_batches().filter(pk=batch.pk).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    other = OtherClaimer(lambda: claim.claim_batch(uuid.uuid4()))
    errors, sent = [], None
    try:
        with transaction.atomic():
            Batch.objects.select_for_update().get(pk=batch.pk)
            other.start()
            other.join(0.5)
            sent = mark_sent(batch, owner)
    except DatabaseError as exc:
        errors.append(exc)
    finally:
        other.finish()
    if other.error is not None:
        errors.append(other.error)
    assert not errors, f"a deadlock or lock error surfaced: {errors}"
    assert sent
    assert other.result is not None and other.result.pk != batch.pk
