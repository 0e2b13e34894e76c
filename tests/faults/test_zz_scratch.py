import time, pytest
from tests.factories import CourseSnapshotFactory
from tests.faults.helpers import queued_rows, TABLES
from clickhouse_outbox.models import OutboxEntry

@pytest.mark.django_db(transaction=True)
def test_scratch(settings, own_clickhouse_server):
    t=time.monotonic()
    for n in (5, 10, 30, 100):
        CourseSnapshotFactory(course__blocks=n)
        print(n, {t.name: queued_rows(t.name) for t in TABLES})
        OutboxEntry.objects.all().delete()
    t=time.monotonic()
    for _ in range(20): CourseSnapshotFactory(course__blocks=100)
    print("20x100", time.monotonic()-t)
    settings.CLICKHOUSE_OUTBOX_ENTRY_MAX_BYTES=16384
    t=time.monotonic()
    for _ in range(20): CourseSnapshotFactory(course__blocks=100)
    print("20x100 small entries", time.monotonic()-t, OutboxEntry.objects.count())
    t=time.monotonic(); own_clickhouse_server.stop(); print("stop", time.monotonic()-t)
    t=time.monotonic(); own_clickhouse_server.start(); print("start", time.monotonic()-t)
