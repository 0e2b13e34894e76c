"""
A drain against a ClickHouse that trickles its answers (tests/misbehaving.py, a real HTTP
server on loopback): it returns within its max seconds plus one request deadline
(connect_timeout_secs + timeout_secs), the batch waits to retry with nothing lost, and the
drainer that takes the batch after a lease ran out does not hang either.

Before, a request's timeout bounded each socket read, so a byte every 0.1 s kept a drain
running for as long as the server went on. A watchdog closes the server well after the
bound, so a drain that ignores its bound still returns and the test fails instead of hanging.
"""

import threading
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db.models import F

from clickhouse_outbox.clickhouse.backends import get_backend
from clickhouse_outbox.models import Batch, OutboxEntry
from clickhouse_outbox.outbox.claim import claim_batch
from clickhouse_outbox.outbox.drain import drain
from tests.factories import CourseSnapshotFactory
from tests.misbehaving import MisbehavingServer, trickle_body, trickle_headers

pytestmark = pytest.mark.django_db

SECRET = "drain-Deadline-Secret-7"
CONNECT_SECS = 1.0
TIMEOUT_SECS = 2.0
REQUEST_DEADLINE = CONNECT_SECS + TIMEOUT_SECS
MARGIN = 1.0  # a loaded 2-core machine
WATCHDOG_SECS = 20  # the old drain ran until the server stopped: this stops it


@pytest.fixture
def trickling(settings):
    """A ClickHouse that answers a byte every 0.1 s (headers for the version query, the body after), for ever."""
    calls = {"n": 0}
    behaviours = (trickle_headers(interval=0.1), trickle_body(interval=0.1))

    def behaviour(peer):
        calls["n"] += 1
        return behaviours[calls["n"] % 2](peer)

    with MisbehavingServer(behaviour) as server:
        settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = {
            "url": server.url, "username": "outbox", "password": SECRET, "database": "event_sink",
            "timeout_secs": TIMEOUT_SECS, "connect_timeout_secs": CONNECT_SECS,
        }
        watchdog = threading.Timer(WATCHDOG_SECS, server.close)
        watchdog.start()
        try:
            yield server
        finally:
            watchdog.cancel()


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_a_drain_returns_within_its_max_seconds_and_one_request_deadline(trickling, settings):
    settings.CLICKHOUSE_OUTBOX_BATCH_ROWS = 10  # several batches: none must be tried once the first hangs
    CourseSnapshotFactory(course__blocks=30)
    max_seconds = 0.5

    result, elapsed = timed(lambda: drain(max_seconds=max_seconds))

    assert elapsed < max_seconds + REQUEST_DEADLINE + MARGIN
    assert (result.batches_sent, result.batches_retrying) == (0, 1)
    (batch,) = Batch.objects.all()
    assert (batch.status, batch.attempts, batch.server_error) == (Batch.Status.RETRY, 1, True)
    assert f"did not answer the version query within timeout_secs={TIMEOUT_SECS:g}s" in batch.last_error
    assert SECRET not in batch.last_error
    assert OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING).exists()  # the rest wait, untouched


def test_the_drainer_that_takes_a_batch_after_its_lease_ran_out_does_not_hang_either(trickling):
    CourseSnapshotFactory(course__blocks=5)
    claim_batch("00000000-0000-4000-8000-000000000001")  # a drainer that hung (or died) on it...
    Batch.objects.update(lease_expires_at=F("lease_expires_at") - timedelta(days=1))  # ...until its lease ran out

    for attempt in (2, 3):
        result, elapsed = timed(lambda: drain(max_seconds=0.5))
        assert elapsed < 0.5 + REQUEST_DEADLINE + MARGIN
        batch = Batch.objects.order_by("id").first()
        assert (batch.status, batch.attempts) == (Batch.Status.RETRY, attempt)
        assert result.batches_retrying == 1
        Batch.objects.filter(pk=batch.pk).update(next_attempt_at=F("next_attempt_at") - timedelta(days=1))
    assert not Batch.objects.filter(status=Batch.Status.SENT).exists()


def test_outbox_drain_returns_within_its_max_seconds_and_one_request_deadline(trickling, settings):
    settings.CLICKHOUSE_OUTBOX_DRAIN_MAX_SECS = 0.5
    CourseSnapshotFactory(course__blocks=5)

    started = time.monotonic()
    with pytest.raises(CommandError) as caught:
        call_command("outbox_drain")
    elapsed = time.monotonic() - started

    assert elapsed < 0.5 + REQUEST_DEADLINE + MARGIN
    assert caught.value.returncode == 1
    assert Batch.objects.get().status == Batch.Status.RETRY


def test_outbox_drain_until_empty_gives_up_at_its_timeout(trickling):
    CourseSnapshotFactory(course__blocks=5)

    started = time.monotonic()
    with pytest.raises(CommandError) as caught:
        call_command("outbox_drain", "--until-empty", "--timeout", "2")
    elapsed = time.monotonic() - started

    # The timeout, one request deadline, and the one-second pause between runs.
    assert elapsed < 2 + REQUEST_DEADLINE + 1 + MARGIN
    assert "Gave up after 2s" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_batch_whose_request_could_not_start_before_the_end_goes_back_unsent(trickling):
    """The drain's time ran out between the claim and the request: nothing was sent, no attempt counted."""
    CourseSnapshotFactory(course__blocks=5)
    backend = get_backend()

    with backend.starting_until(time.monotonic() - 1):  # as if the claim had taken the last of the time
        result = drain(max_seconds=30, backend=backend)

    assert trickling.requests == []
    assert (result.batches_sent, result.batches_retrying, result.errors) == (0, 0, [])
    (batch,) = Batch.objects.all()
    assert (batch.status, batch.attempts, batch.last_error) == (Batch.Status.RETRY, 0, "")
    assert batch.next_attempt_at is not None
    assert claim_batch("00000000-0000-4000-8000-000000000002").pk == batch.pk  # due again at once
