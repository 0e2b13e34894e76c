"""
The periodic drain task: it drains, purges, and overlapping runs skip through the cache lock.
"""

import pytest
from django.core.cache import cache

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.models import Batch
from clickhouse_outbox.tasks import LOCK_KEY, beat_schedule_entry, drain_outbox
from tests.factories import CourseSnapshotFactory

pytestmark = pytest.mark.django_db


def test_the_task_drains_the_outbox(clickhouse):
    CourseSnapshotFactory()
    result = drain_outbox.apply().get()
    assert result["batches_sent"] == 3 and not result["skipped"]
    assert Batch.objects.filter(status=Batch.Status.SENT).count() == 3
    n = clickhouse.query(f"SELECT count() AS n FROM {qualified_name(clickhouse.database, 'course_overviews')}")
    assert int(n[0]["n"]) == 1
    assert cache.get(LOCK_KEY) is None  # released by its owner


def test_a_run_that_overlaps_another_does_nothing(clickhouse):
    CourseSnapshotFactory()
    assert cache.add(LOCK_KEY, "another-run", timeout=60)
    try:
        assert drain_outbox.apply().get() == {"skipped": True}
        assert not Batch.objects.exists()
        assert cache.get(LOCK_KEY) == "another-run"  # not released by a run that does not own it
    finally:
        cache.delete(LOCK_KEY)


def test_beat_entry_expires_before_the_next_run(settings):
    settings.CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS = 7
    entry = beat_schedule_entry()
    assert entry == {
        "task": "clickhouse_outbox.tasks.drain_outbox",
        "schedule": 7,
        "options": {"expires": 7, "expire_seconds": 7},  # django-celery-beat reads only expire_seconds
    }
