"""
The openedx-events receivers, with the events sent for real (`send_event`, as edx-platform
sends them): an import or a re-run queues a snapshot in the sender's transaction, a
rollback of that transaction leaves nothing, and a course that cannot be read is recorded
as a failed snapshot without disturbing the sender or its transaction.
"""

import pytest
from django.contrib.auth.models import Group
from django.db import connection, transaction
from openedx_events.content_authoring.data import CourseData
from openedx_events.content_authoring.signals import COURSE_IMPORT_COMPLETED, COURSE_RERUN_COMPLETED
from opaque_keys.edx.keys import CourseKey

from clickhouse_outbox import receivers
from clickhouse_outbox.models import OutboxEntry, Snapshot
from clickhouse_outbox.producers.course_structure import PRODUCER
from clickhouse_outbox.sources.base import CourseSource

#: The sample course's rows per table: 1 overview; 46 tree blocks + 6 detached blocks;
#: 45 parent -> child edges (see clickhouse_outbox.sources.olx.SAMPLE_COURSE_DIR).
SAMPLE_ROWS = {"course_overviews": 1, "course_blocks": 52, "course_relationships": 45}
MISSING_KEY = CourseKey.from_string("course-v1:Nobody+Missing+2026")

EVENTS = {
    "imported": (COURSE_IMPORT_COMPLETED, receivers.course_import_completed),
    "rerun": (COURSE_RERUN_COMPLETED, receivers.course_rerun_completed),
}


class ExplodingSource(CourseSource):
    """A course source whose store is unreachable."""

    MESSAGE = "course store unreachable: connection reset by peer (exploding-source)"

    def get_course(self, course_key):
        raise RuntimeError(self.MESSAGE)

    def course_keys(self):
        return []


class WritesThenFailsInTheDatabaseSource(CourseSource):
    """
    A course source that writes a row and then hits a database error, inside the snapshot's
    savepoint. On PostgreSQL the error aborts the whole transaction unless the savepoint is
    rolled back; on every database the row it wrote must disappear with the savepoint.
    """

    PROBE = "written-inside-the-failed-snapshot"

    def get_course(self, course_key):
        Group.objects.create(name=self.PROBE)
        with connection.cursor() as cursor:
            cursor.execute("SELECT no_such_column FROM clickhouse_outbox_no_such_table")
        raise AssertionError("the query above must fail")

    def course_keys(self):
        return []


def send(event_name, course_key, **kwargs):
    """Send the event the way edx-platform does; returns our receiver's response."""
    signal, receiver = EVENTS[event_name]
    responses = signal.send_event(course=CourseData(course_key=course_key), **kwargs)
    ours = [response for func, response in responses if func is receiver]
    assert len(ours) == 1, f"{receiver.__name__} is not connected to {signal} exactly once: {responses}"
    return ours[0]


def entries_per_table(snapshot):
    counts = {}
    for entry in OutboxEntry.objects.filter(snapshot=snapshot):
        counts[entry.table] = counts.get(entry.table, 0) + entry.row_count
    return counts


# --- queued ------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("reason", ["imported", "rerun"])
def test_event_queues_a_snapshot(sample_course_key, reason):
    response = send(reason, sample_course_key)

    assert not isinstance(response, Exception), response
    snapshot = Snapshot.objects.get()
    assert snapshot.producer == PRODUCER
    assert snapshot.subject == str(sample_course_key)
    assert snapshot.reason == reason
    assert snapshot.status == Snapshot.Status.QUEUED
    assert snapshot.error == ""
    assert snapshot.row_count == sum(SAMPLE_ROWS.values())
    assert entries_per_table(snapshot) == SAMPLE_ROWS
    assert OutboxEntry.objects.count() == OutboxEntry.objects.filter(
        snapshot=snapshot, status=OutboxEntry.Status.PENDING
    ).count()


@pytest.mark.django_db
def test_import_then_rerun_supersedes_the_unsent_snapshot(sample_course_key):
    send("imported", sample_course_key)
    send("rerun", sample_course_key)

    statuses = dict(Snapshot.objects.values_list("reason", "status"))
    assert statuses == {"imported": Snapshot.Status.SUPERSEDED, "rerun": Snapshot.Status.QUEUED}
    latest = Snapshot.objects.get(reason="rerun")
    pending = OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING)
    assert set(pending.values_list("snapshot_id", flat=True)) == {latest.pk}
    assert entries_per_table(latest) == SAMPLE_ROWS


# --- the sender's transaction ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("reason", ["imported", "rerun"])
def test_rolled_back_publish_queues_nothing(sample_course_key, reason):
    class PublishFailed(Exception):
        pass

    with pytest.raises(PublishFailed):
        with transaction.atomic():
            send(reason, sample_course_key)
            # Written, in the publish's transaction...
            assert Snapshot.objects.filter(status=Snapshot.Status.QUEUED).count() == 1
            assert OutboxEntry.objects.exists()
            raise PublishFailed("the publish failed after the event")

    # ...and gone with it.
    assert not connection.in_atomic_block
    assert not Snapshot.objects.exists()
    assert not OutboxEntry.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_committed_publish_keeps_the_snapshot(sample_course_key):
    with transaction.atomic():
        Group.objects.create(name="publish")
        send("imported", sample_course_key)

    assert not connection.in_atomic_block
    snapshot = Snapshot.objects.get()
    assert snapshot.status == Snapshot.Status.QUEUED
    assert entries_per_table(snapshot) == SAMPLE_ROWS
    assert Group.objects.filter(name="publish").exists()


# --- failures ------------------------------------------------------------------------------


def assert_failed_snapshot(reason, subject, *error_parts):
    snapshot = Snapshot.objects.get()
    assert (snapshot.producer, snapshot.subject, snapshot.reason) == (PRODUCER, subject, reason)
    assert snapshot.status == Snapshot.Status.FAILED
    assert snapshot.row_count == 0
    for part in error_parts:
        assert part in snapshot.error, snapshot.error
    assert not OutboxEntry.objects.exists()
    return snapshot


@pytest.mark.django_db
@pytest.mark.parametrize("reason", ["imported", "rerun"])
def test_unknown_course_records_a_failed_snapshot(olx_dir, reason):
    response = send(reason, MISSING_KEY)

    assert not isinstance(response, Exception), "the failure must be recorded, not left to send_robust"
    assert_failed_snapshot(reason, str(MISSING_KEY), "CourseNotFound", str(MISSING_KEY), str(olx_dir))


@pytest.mark.django_db
@pytest.mark.parametrize("reason", ["imported", "rerun"])
def test_unknown_course_does_not_raise_even_without_send_robust(olx_dir, reason):
    """With DEBUG on, openedx-events sends with plain `send`: the receiver itself must not raise."""
    send(reason, MISSING_KEY, send_robust=False)
    assert_failed_snapshot(reason, str(MISSING_KEY), "CourseNotFound")


@pytest.mark.django_db
def test_course_source_that_raises_records_the_error(settings, sample_course_key):
    settings.CLICKHOUSE_OUTBOX_COURSE_SOURCE = f"{__name__}.ExplodingSource"

    response = send("imported", sample_course_key, send_robust=False)

    assert not isinstance(response, Exception)
    snapshot = assert_failed_snapshot("imported", str(sample_course_key), "RuntimeError", ExplodingSource.MESSAGE)
    assert "Traceback" in snapshot.error, "the error keeps its traceback for whoever requeues it"


@pytest.mark.django_db(transaction=True)
def test_failure_inside_a_committed_outer_transaction_keeps_both(settings, sample_course_key):
    """
    Tutor runs the CMS with ATOMIC_REQUESTS: the receiver runs inside the request's
    transaction. Its failure is rolled back to its savepoint only: the failed snapshot and
    the request's own writes, before and after the event, are all committed.
    """
    settings.CLICKHOUSE_OUTBOX_COURSE_SOURCE = f"{__name__}.WritesThenFailsInTheDatabaseSource"

    with transaction.atomic():
        Group.objects.create(name="request-before-event")
        response = send("imported", sample_course_key, send_robust=False)
        Group.objects.create(name="request-after-event")

    assert not isinstance(response, Exception)
    assert not connection.in_atomic_block
    assert set(Group.objects.values_list("name", flat=True)) == {"request-before-event", "request-after-event"}
    assert_failed_snapshot("imported", str(sample_course_key), "clickhouse_outbox_no_such_table")


@pytest.mark.django_db(transaction=True)
def test_unknown_course_inside_a_committed_outer_transaction(olx_dir):
    with transaction.atomic():
        Group.objects.create(name="request")
        send("rerun", MISSING_KEY)

    assert Group.objects.filter(name="request").exists()
    assert_failed_snapshot("rerun", str(MISSING_KEY), "CourseNotFound")


@pytest.mark.django_db
def test_a_later_good_snapshot_supersedes_the_failed_one(settings, sample_course_key):
    settings.CLICKHOUSE_OUTBOX_COURSE_SOURCE = f"{__name__}.ExplodingSource"
    send("imported", sample_course_key)
    settings.CLICKHOUSE_OUTBOX_COURSE_SOURCE = "clickhouse_outbox.sources.olx.OlxFolderSource"
    send("rerun", sample_course_key)

    assert dict(Snapshot.objects.values_list("reason", "status")) == {
        "imported": Snapshot.Status.SUPERSEDED, "rerun": Snapshot.Status.QUEUED,
    }


# --- switched off ------------------------------------------------------------------------


@pytest.mark.django_db
def test_disabled_queues_nothing(settings, sample_course_key):
    settings.CLICKHOUSE_OUTBOX_ENABLED = False

    send("imported", sample_course_key)
    send("rerun", sample_course_key)
    send("imported", MISSING_KEY)  # not even a failed snapshot

    assert not Snapshot.objects.exists()
    assert not OutboxEntry.objects.exists()

    # The same events queue once it is switched back on (the test's setup is not the reason).
    settings.CLICKHOUSE_OUTBOX_ENABLED = True
    send("imported", sample_course_key)
    assert Snapshot.objects.filter(status=Snapshot.Status.QUEUED).count() == 1
