"""
Retention: sent rows are purged after the retention period; unsent and failed rows never are.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from clickhouse_outbox.models import Batch, OutboxEntry, Snapshot
from clickhouse_outbox.outbox.drain import drain
from clickhouse_outbox.outbox.purge import purge_sent
from tests.factories import BatchFactory, CourseSnapshotFactory, MemorySource, PublishedCourseFactory

pytestmark = pytest.mark.django_db
LONG_AGO = timezone.now() - timedelta(days=30)


def test_old_sent_rows_are_purged_and_nothing_else(clickhouse, settings):
    settings.CLICKHOUSE_OUTBOX_RETENTION_DAYS = 7
    old, recent = CourseSnapshotFactory(), CourseSnapshotFactory()
    drain()
    Batch.objects.update(sent_at=LONG_AGO)
    Snapshot.objects.update(created=LONG_AGO)
    pending = CourseSnapshotFactory()  # queued, never sent
    failed = BatchFactory(created=LONG_AGO)
    OutboxEntry.objects.create(table="course_blocks", status=OutboxEntry.Status.BATCHED, batch=failed,
                               row_count=1, payload=b"{}\n", created=LONG_AGO)
    assert purge_sent() == 3
    assert not Batch.objects.filter(status=Batch.Status.SENT).exists()
    assert Batch.objects.filter(pk=failed.pk).exists() and failed.entries.count() == 1
    assert pending.entries.filter(status=OutboxEntry.Status.PENDING).count() == 3
    # Each course keeps its latest snapshot, so per-course state stays queryable.
    assert set(Snapshot.objects.values_list("id", flat=True)) == {old.id, recent.id, pending.id}


def test_recent_sent_rows_stay(clickhouse, settings):
    settings.CLICKHOUSE_OUTBOX_RETENTION_DAYS = 7
    CourseSnapshotFactory()
    drain()
    assert purge_sent() == 0
    assert Batch.objects.filter(status=Batch.Status.SENT).count() == 3


def test_purge_works_in_bounded_chunks(clickhouse, settings, monkeypatch):
    from clickhouse_outbox.outbox import purge

    monkeypatch.setattr(purge, "CHUNK", 2)
    for _ in range(3):
        CourseSnapshotFactory()
    drain()
    Batch.objects.update(sent_at=LONG_AGO)
    assert purge_sent(max_chunks=1) == 2
    assert purge_sent(max_chunks=10) == 1


def test_superseded_old_snapshots_without_rows_are_purged_but_not_the_latest(settings):
    settings.CLICKHOUSE_OUTBOX_RETENTION_DAYS = 1
    course = PublishedCourseFactory()
    source = MemorySource([course])
    from clickhouse_outbox.producers.course_structure import take_course_snapshot

    first = take_course_snapshot(course.course_key, "published", source=source)
    latest = take_course_snapshot(course.course_key, "published", source=source)
    OutboxEntry.objects.filter(status=OutboxEntry.Status.SUPERSEDED).delete()
    Snapshot.objects.update(created=LONG_AGO)
    purge_sent()
    assert not Snapshot.objects.filter(pk=first.pk).exists()
    assert Snapshot.objects.filter(pk=latest.pk).exists()


def test_drainers_purge_at_most_once_per_interval(clickhouse, settings):
    from django.core.cache import cache

    from clickhouse_outbox.outbox.purge import PURGE_KEY, purge_if_due

    cache.delete(PURGE_KEY)
    CourseSnapshotFactory()
    drain()
    Batch.objects.update(sent_at=LONG_AGO)
    try:
        CourseSnapshotFactory()
        drain()
        old = Batch.objects.filter(sent_at=LONG_AGO).count()
        assert purge_if_due() == old  # this run's turn: the old batches go
        Batch.objects.update(sent_at=LONG_AGO)
        assert purge_if_due() is None  # another run within the interval does not scan again
        assert Batch.objects.count() == 3
    finally:
        cache.delete(PURGE_KEY)
    assert purge_if_due() == 3
