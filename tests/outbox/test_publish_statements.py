"""
What one publish costs the database (issue 19, goal 5; decision record 0018): a handful of
statements, none per block, and the same number whatever the course's history.
"""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from clickhouse_outbox.models import OutboxEntry, Snapshot
from clickhouse_outbox.outbox.claim import claim_batch
from clickhouse_outbox.producers.course_structure import snapshot_or_record_failure, take_course_snapshot
from tests.factories import MemorySource, PublishedCourseFactory

pytestmark = pytest.mark.django_db


def statements_of(course, source):
    with CaptureQueriesContext(connection) as queries:
        take_course_snapshot(course.course_key, "published", source=source)
    return [query["sql"].split()[0].upper() for query in queries.captured_queries]


def test_a_republish_is_eight_statements_whatever_the_history():
    course = PublishedCourseFactory(blocks=1000)
    source = MemorySource([course])
    first = statements_of(course, source)
    # The savepoint, the database's time, the course's snapshots, the INSERTs of the snapshot and its entries.
    assert first == ["SAVEPOINT", "SELECT", "SELECT", "INSERT", "INSERT", "RELEASE"], first
    # Then the older snapshot's entries and the snapshot itself superseded: two UPDATEs.
    again = [statements_of(course, source) for _ in range(5)]
    assert again[0] == ["SAVEPOINT", "SELECT", "SELECT", "UPDATE", "UPDATE", "INSERT", "INSERT", "RELEASE"], again[0]
    assert all(statements == again[0] for statements in again)


def test_superseding_keeps_claimed_rows_and_retires_failed_snapshots_in_one_update():
    course = PublishedCourseFactory()
    source = MemorySource([course])
    failed = snapshot_or_record_failure(course.course_key, "published", source=MemorySource())
    claimed = take_course_snapshot(course.course_key, "published", source=source)
    claim_batch(uuid.uuid4())  # one entry of `claimed` is now in a batch
    unclaimed = take_course_snapshot(course.course_key, "published", source=source)
    latest = take_course_snapshot(course.course_key, "published", source=source)
    statuses = dict(Snapshot.objects.values_list("id", "status"))
    assert statuses[failed.id] == Snapshot.Status.SUPERSEDED
    assert statuses[claimed.id] == Snapshot.Status.QUEUED  # partly claimed: not wholly superseded
    assert statuses[unclaimed.id] == Snapshot.Status.SUPERSEDED
    assert statuses[latest.id] == Snapshot.Status.QUEUED
    assert set(unclaimed.entries.values_list("status", flat=True)) == {OutboxEntry.Status.SUPERSEDED}
    assert claimed.entries.filter(status=OutboxEntry.Status.BATCHED).count() == 1
    assert set(latest.entries.values_list("status", flat=True)) == {OutboxEntry.Status.PENDING}
