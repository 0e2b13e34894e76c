"""
Deferred snapshots (CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain"): a publish writes a request in
its transaction; the drain reads the course and queues its rows in that request; the
guarantees are a snapshot's (a rolled-back publish leaves nothing, ten publishes make one
snapshot, a course that cannot be read is kept as failed, a dead drainer's requests come
back), on real databases and a real ClickHouse.
"""

import io
import shutil
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import transaction
from django.db.models import F
from openedx_events.content_authoring.data import CourseData
from openedx_events.content_authoring.signals import COURSE_IMPORT_COMPLETED

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.models import OutboxEntry, Snapshot
from clickhouse_outbox.operations.status import outbox_status
from clickhouse_outbox.outbox.drain import backlog, drain, drain_until_empty
from clickhouse_outbox.outbox.enqueue import fill_requested
from clickhouse_outbox.outbox.requested import claim_requests, take_requested
from clickhouse_outbox.producers.course_structure import COURSES, prepare_course
from clickhouse_outbox.receivers import course_published
from clickhouse_outbox.sources import get_course_source
from clickhouse_outbox.sources.olx import folder_name

pytestmark = pytest.mark.django_db

#: The sample course's rows per table (see clickhouse_outbox.sources.olx.SAMPLE_COURSE_DIR).
SAMPLE_ROWS = {"course_overviews": 1, "course_blocks": 52, "course_relationships": 45}


@pytest.fixture(autouse=True)
def deferred(settings):
    settings.CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain"


def publish(course_key):
    course_published(sender=None, course_key=course_key)


def count(backend, table, where="1"):
    return int(backend.query(f"SELECT count() AS n FROM {qualified_name(backend.database, table)} WHERE {where}")[0]["n"])


def test_a_publish_writes_only_a_request_and_the_drain_takes_and_sends_it(sample_course_key, clickhouse):
    with transaction.atomic():
        publish(sample_course_key)
    request = Snapshot.objects.get()
    assert (request.status, request.subject, request.reason, request.row_count) == (
        Snapshot.Status.REQUESTED, str(sample_course_key), "published", 0)
    assert not OutboxEntry.objects.exists()  # nothing read or serialized in the publish
    assert backlog()["pending_entries"] == 1  # --until-empty waits for it

    result = drain()
    assert result.snapshots_taken == 1 and result.batches_sent == 3 and not result.errors
    request.refresh_from_db()
    assert (request.status, request.row_count, request.lease_owner) == (Snapshot.Status.QUEUED, 98, None)
    assert request.time_last_dumped
    where = f"course_key = '{sample_course_key}' AND toString(dump_id) = '{request.dump_id}'"
    assert {table: count(clickhouse, table, where) for table in SAMPLE_ROWS} == SAMPLE_ROWS


def test_a_rolled_back_publish_requests_nothing(sample_course_key):
    with pytest.raises(RuntimeError), transaction.atomic():
        COURSE_IMPORT_COMPLETED.send_event(course=CourseData(course_key=sample_course_key))
        raise RuntimeError("the import failed after the event")
    assert not Snapshot.objects.exists()


def test_ten_publishes_in_a_row_make_one_snapshot(sample_course_key, chdb_clickhouse):
    for _ in range(10):
        publish(sample_course_key)
    assert Snapshot.objects.filter(status=Snapshot.Status.REQUESTED).count() == 1
    assert Snapshot.objects.filter(status=Snapshot.Status.SUPERSEDED).count() == 9
    drain_until_empty(timeout=60, poll_interval=0.05)
    assert Snapshot.objects.filter(status=Snapshot.Status.QUEUED).count() == 1
    assert count(chdb_clickhouse, "course_blocks") == SAMPLE_ROWS["course_blocks"]


def test_a_course_that_cannot_be_read_fails_the_request_and_requeue_takes_it_again(sample_course_key, olx_dir,
                                                                                   tmp_path, chdb_clickhouse):
    publish(sample_course_key)
    moved = tmp_path / "away"
    shutil.move(olx_dir / folder_name(sample_course_key), moved)  # gone when the drain reads it
    result = drain()
    assert result.snapshots_taken == 1 and result.batches_sent == 0
    failed = Snapshot.objects.get()
    assert failed.status == Snapshot.Status.FAILED and "no OLX export" in failed.error and failed.lease_owner is None
    assert [subject for _, subject, _ in outbox_status().failed_snapshots] == [str(sample_course_key)]

    shutil.move(moved, olx_dir / folder_name(sample_course_key))
    call_command("outbox_requeue", "--failed", stdout=io.StringIO(), stderr=io.StringIO())
    failed.refresh_from_db()
    assert failed.status == Snapshot.Status.SUPERSEDED
    assert Snapshot.objects.filter(status=Snapshot.Status.QUEUED, reason="requeue").count() == 1


def test_a_dead_drainers_requests_come_back_and_its_late_write_changes_nothing(sample_course_key, chdb_clickhouse):
    publish(sample_course_key)
    dead = uuid.uuid4()
    (held,) = claim_requests(dead, 10)
    assert claim_requests(uuid.uuid4(), 10) == []  # leased: nobody else takes it meanwhile
    assert take_requested() == 0
    Snapshot.objects.filter(pk=held.pk).update(lease_expires_at=F("lease_expires_at") - timedelta(days=1))

    assert take_requested() == 1  # the lease ran out: another drainer took it
    taken = Snapshot.objects.get(pk=held.pk)
    assert taken.status == Snapshot.Status.QUEUED
    entries = OutboxEntry.objects.count()

    # The dead drainer wakes up and writes what it had read: refused, nothing doubled.
    late = prepare_course(held.subject, source=get_course_source(), now=taken.created)
    assert fill_requested(COURSES, [held], [late], dead) is False
    assert OutboxEntry.objects.count() == entries
    assert Snapshot.objects.get(pk=held.pk).dump_id == taken.dump_id


def test_a_request_being_taken_is_not_retired_by_the_next_publish(sample_course_key, chdb_clickhouse):
    publish(sample_course_key)
    (held,) = claim_requests(uuid.uuid4(), 10)
    publish(sample_course_key)  # published again while a drainer reads the course
    assert list(Snapshot.objects.order_by("id").values_list("status", flat=True)) == [
        Snapshot.Status.REQUESTED, Snapshot.Status.REQUESTED]
    Snapshot.objects.filter(pk=held.pk).update(lease_expires_at=F("lease_expires_at") - timedelta(days=1))
    drain_until_empty(timeout=60, poll_interval=0.05)
    assert list(Snapshot.objects.order_by("id").values_list("status", flat=True)) == [
        Snapshot.Status.QUEUED, Snapshot.Status.QUEUED]


def test_status_counts_requests_and_their_age(sample_course_key):
    publish(sample_course_key)
    Snapshot.objects.update(created=F("created") - timedelta(hours=2))
    status = outbox_status()
    assert status.requested_snapshots == 1
    assert status.oldest_unsent_age > 3600  # a request not taken is a row not sent
    assert status.exit_code(max_age=900) == 2
