"""
Queueing at publish: one snapshot, a handful of INSERTs, older unclaimed snapshots superseded.
"""

import json
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from clickhouse_outbox.clickhouse.tables import COURSE_BLOCKS, COURSE_OVERVIEWS, COURSE_RELATIONSHIPS
from clickhouse_outbox.models import OutboxEntry, Snapshot
from clickhouse_outbox.outbox.claim import claim_batch
from clickhouse_outbox.producers.course_structure import snapshot_or_record_failure, take_course_snapshot
from tests.factories import CourseSnapshotFactory, MemorySource, PublishedCourseFactory

pytestmark = pytest.mark.django_db


def lines_of(snapshot, table):
    entries = snapshot.entries.filter(table=table).order_by("id")
    return [json.loads(line) for entry in entries for line in entry.lines().splitlines()]


def test_a_snapshot_queues_every_row_of_the_course_with_its_ids():
    course = PublishedCourseFactory(blocks=40)
    snapshot = take_course_snapshot(course.course_key, "published", source=MemorySource([course]))
    blocks = lines_of(snapshot, COURSE_BLOCKS.name)
    edges = lines_of(snapshot, COURSE_RELATIONSHIPS.name)
    overviews = lines_of(snapshot, COURSE_OVERVIEWS.name)
    assert len(overviews) == 1
    assert len(blocks) == len(course.blocks) + len(course.detached)
    assert len(edges) == sum(len(block.children) for block in course.blocks.values())
    assert snapshot.row_count == len(blocks) + len(edges) + 1
    assert {row["dump_id"] for row in blocks + edges + overviews} == {str(snapshot.dump_id)}
    assert {row["time_last_dumped"] for row in blocks + edges + overviews} == {snapshot.time_last_dumped}
    assert snapshot.status == Snapshot.Status.QUEUED and snapshot.reason == "published"
    assert set(snapshot.entries.values_list("status", flat=True)) == {OutboxEntry.Status.PENDING}


def test_one_publish_is_a_handful_of_inserts(settings):
    course = PublishedCourseFactory(blocks=1000)
    source = MemorySource([course])
    with CaptureQueriesContext(connection) as queries:
        snapshot = take_course_snapshot(course.course_key, "published", source=source)
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("INSERT")]
    assert snapshot.entries.count() >= 3
    assert len(inserts) <= 3, inserts
    assert len(queries.captured_queries) <= 12


def test_large_tables_are_split_into_bounded_entries(settings):
    settings.CLICKHOUSE_OUTBOX_ENTRY_MAX_BYTES = 4096
    course = PublishedCourseFactory(blocks=300)
    snapshot = take_course_snapshot(course.course_key, "published", source=MemorySource([course]))
    entries = list(snapshot.entries.all())
    assert len(entries) > 10
    for entry in entries:
        payload = entry.lines()
        assert payload.count(b"\n") == entry.row_count
        assert len(payload) <= 4096 or entry.row_count == 1
    assert sum(entry.row_count for entry in entries) == snapshot.row_count


def test_a_newer_snapshot_supersedes_an_unclaimed_older_one():
    course = PublishedCourseFactory()
    source = MemorySource([course])
    snapshots = [take_course_snapshot(course.course_key, "published", source=source) for _ in range(10)]
    for old in snapshots[:-1]:
        old.refresh_from_db()
        assert old.status == Snapshot.Status.SUPERSEDED
        assert set(old.entries.values_list("status", flat=True)) == {OutboxEntry.Status.SUPERSEDED}
    pending = OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING)
    assert set(pending.values_list("snapshot_id", flat=True)) == {snapshots[-1].id}


def test_other_courses_are_not_superseded():
    first, second = CourseSnapshotFactory(), CourseSnapshotFactory()
    first.refresh_from_db()
    assert first.status == Snapshot.Status.QUEUED
    assert OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING, snapshot=second).exists()


def test_claimed_rows_of_an_older_snapshot_are_left_alone():
    course = PublishedCourseFactory()
    source = MemorySource([course])
    old = take_course_snapshot(course.course_key, "published", source=source)
    batch = claim_batch(uuid.uuid4())  # the overview entry of the old snapshot is now in a batch
    take_course_snapshot(course.course_key, "published", source=source)
    old.refresh_from_db()
    assert old.status == Snapshot.Status.QUEUED  # partly claimed: it is not wholly superseded
    assert list(OutboxEntry.objects.filter(batch=batch).values_list("status", flat=True)) == [
        OutboxEntry.Status.BATCHED
    ]
    assert old.entries.filter(status=OutboxEntry.Status.SUPERSEDED).count() == old.entries.count() - 1


def test_a_snapshot_that_cannot_be_taken_is_recorded_with_its_error():
    snapshot = snapshot_or_record_failure("course-v1:No+Such+Course", "published", source=MemorySource())
    assert snapshot.status == Snapshot.Status.FAILED
    assert "CourseNotFound" in snapshot.error and "course-v1:No+Such+Course" in snapshot.error
    assert not OutboxEntry.objects.exists()


def test_a_later_good_snapshot_supersedes_the_failed_one():
    course = PublishedCourseFactory()
    failed = snapshot_or_record_failure(course.course_key, "published", source=MemorySource())
    take_course_snapshot(course.course_key, "published", source=MemorySource([course]))
    failed.refresh_from_db()
    assert failed.status == Snapshot.Status.SUPERSEDED


def test_an_invalid_course_key_is_a_clear_error():
    with pytest.raises(ValueError, match="is not a course key"):
        take_course_snapshot("not a key", "published", source=MemorySource())


def test_each_snapshot_has_its_own_fixed_dump_id_and_time():
    course = PublishedCourseFactory()
    source = MemorySource([course])
    a = take_course_snapshot(course.course_key, "published", source=source)
    b = take_course_snapshot(course.course_key, "published", source=source)
    assert a.dump_id != b.dump_id
    assert a.time_last_dumped <= b.time_last_dumped
    assert len(a.time_last_dumped) == len("2026-11-27 10:00:00.000000+00:00")
