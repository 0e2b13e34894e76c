"""
Retention: sent rows, rows that will never be sent (superseded, removed by a retirement,
split), emptied snapshots and finished dump jobs' subjects go after the retention period;
failed batches after their own, longer one, each logged; unsent rows, failed snapshots, each
subject's latest snapshot and failed deletes stay. The outbox's size stays bounded under a
steady stream of changes, and a purge reads every table of any size through an index.
"""

import logging
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from clickhouse_outbox.db import db_now
from clickhouse_outbox.models import Batch, DumpJob, DumpJobItem, Kind, OutboxEntry, Snapshot
from clickhouse_outbox.operations.delivery import State, with_delivery
from clickhouse_outbox.outbox import purge as purge_module
from clickhouse_outbox.outbox.drain import drain
from clickhouse_outbox.outbox.purge import purge
from clickhouse_outbox.producers.course_structure import take_course_snapshot
from clickhouse_outbox.receivers import user_retired
from outbox_project.platform.models import UserProfile
from tests.factories import BatchFactory, CourseSnapshotFactory, MemorySource, PublishedCourseFactory
from tests.learners import change_enrollment, enroll, give_external_id, make_learner
from tests.outbox.helpers import app_tables, as_bytes, drain_until_settled, drift

pytestmark = pytest.mark.django_db
LONG_AGO = timezone.now() - timedelta(days=30)
TEXT_FIELDS = {"CharField", "TextField", "BinaryField", "JSONField", "UUIDField"}


def age_everything(when=LONG_AGO):
    """Make every row old: as if it was queued, sent, split or failed at `when`."""
    OutboxEntry.objects.update(created=when)
    Snapshot.objects.update(created=when)
    Batch.objects.update(created=when)
    Batch.objects.filter(status=Batch.Status.SENT).update(sent_at=when)
    Batch.objects.exclude(last_error_at=None).update(last_error_at=when)


def publish_twice(course=None):
    """A course published twice before a drain: the first snapshot's entries are superseded, never sent."""
    course = course or PublishedCourseFactory(blocks=5)
    source = MemorySource([course])
    first = take_course_snapshot(course.course_key, "published", source=source)
    latest = take_course_snapshot(course.course_key, "published", source=source)
    return first, latest


def test_old_sent_rows_are_purged_and_unsent_ones_stay(clickhouse, settings):
    settings.CLICKHOUSE_OUTBOX_RETENTION_DAYS = 7
    old, recent = CourseSnapshotFactory(), CourseSnapshotFactory()
    drain()
    age_everything()
    pending = CourseSnapshotFactory()  # queued, never sent
    failed = BatchFactory(created=LONG_AGO, last_error_at=timezone.now())  # failed a moment ago
    OutboxEntry.objects.create(table="course_blocks", status=OutboxEntry.Status.BATCHED, batch=failed,
                               row_count=1, payload=b"{}\n", created=LONG_AGO)
    purged = purge()
    assert (purged.sent_batches, purged.failed_batches) == (3, 0)
    assert not Batch.objects.filter(status=Batch.Status.SENT).exists()
    assert Batch.objects.filter(pk=failed.pk).exists() and failed.entries.count() == 1
    assert pending.entries.filter(status=OutboxEntry.Status.PENDING).count() == 3
    # Each course keeps its latest snapshot, so per-course state stays queryable.
    assert set(Snapshot.objects.values_list("id", flat=True)) == {old.id, recent.id, pending.id}


def test_recent_sent_rows_stay(clickhouse, settings):
    settings.CLICKHOUSE_OUTBOX_RETENTION_DAYS = 7
    CourseSnapshotFactory()
    drain()
    assert not purge()
    assert Batch.objects.filter(status=Batch.Status.SENT).count() == 3


def test_purge_works_in_bounded_chunks(clickhouse, settings, monkeypatch):
    monkeypatch.setattr(purge_module, "CHUNK", 2)
    for _ in range(3):
        CourseSnapshotFactory()
    drain()  # a batch per table
    Batch.objects.update(sent_at=LONG_AGO)
    assert purge(max_chunks=1).sent_batches == 2
    assert purge(max_chunks=10).sent_batches == 1


def test_rows_that_will_never_be_sent_go_after_the_retention_period(chdb_clickhouse, settings):
    settings.CLICKHOUSE_OUTBOX_RETENTION_DAYS = 7
    first, latest = publish_twice()  # superseded: never sent
    ada = make_learner()
    assert drain().ok
    UserProfile.objects.filter(user=ada).update(name="Ada King")
    UserProfile.objects.get(user=ada).save()
    user_retired(sender=None, user=ada)  # removed: the sent copy and the pending one, emptied
    never_sent = OutboxEntry.objects.filter(status__in=[OutboxEntry.Status.SUPERSEDED, OutboxEntry.Status.REMOVED])
    assert set(never_sent.values_list("status", flat=True)) == {"superseded", "removed"}
    assert not purge()  # within the retention period: everything stays
    age_everything()

    purged = purge()

    assert not never_sent.exists() and purged.entries >= 4
    assert not Snapshot.objects.filter(pk=first.pk).exists()
    assert Snapshot.objects.filter(pk=latest.pk).exists()  # the course's latest stays
    deleted = Snapshot.objects.filter(producer="user_profile", status=Snapshot.Status.DELETED)
    assert deleted.count() == 1  # the profile's latest (deleted) snapshot stays, with no row: ids only
    assert not OutboxEntry.objects.exclude(kind=Kind.DELETE).exists()
    assert Snapshot.objects.filter(producer="user_retirement").exists()  # the record of the retirement


def test_split_batches_and_their_entries_go_after_the_retention_period(chdb_clickhouse, settings):
    settings.CLICKHOUSE_OUTBOX_RETENTION_DAYS = 7
    settings.CLICKHOUSE_OUTBOX_FAILED_RETENTION_DAYS = 30
    make_learner()
    make_learner("grace", "Grace Hopper")
    course = PublishedCourseFactory(blocks=5)
    take_course_snapshot(course.course_key, "published", source=MemorySource([course]))
    drift(chdb_clickhouse, "user_profile", "name", "UInt32")
    drift(chdb_clickhouse, "course_blocks", "display_name", "UInt32")  # one entry of several lines: split by lines
    drain_until_settled()
    assert Batch.objects.filter(status=Batch.Status.SPLIT).count() >= 2
    assert OutboxEntry.objects.filter(status=OutboxEntry.Status.SPLIT).exists()
    age_everything(timezone.now() - timedelta(days=8))  # older than the retention, younger than the failed period

    purged = purge()

    assert purged.split_batches >= 2 and purged.failed_batches == 0
    assert not Batch.objects.filter(status=Batch.Status.SPLIT).exists()
    assert not OutboxEntry.objects.filter(status=OutboxEntry.Status.SPLIT).exists()
    assert Batch.objects.filter(status=Batch.Status.FAILED).count() >= 2  # the parts that failed wait for a requeue
    assert not Batch.objects.filter(status=Batch.Status.FAILED, split_from__isnull=False).exists()  # parents gone


def test_failed_batches_go_after_their_own_period_each_logged(chdb_clickhouse, settings, caplog):
    settings.CLICKHOUSE_OUTBOX_RETENTION_DAYS = 7
    settings.CLICKHOUSE_OUTBOX_FAILED_RETENTION_DAYS = 30
    ada = make_learner()
    drift(chdb_clickhouse, "user_profile", "name", "UInt32")
    drain()
    failed = Batch.objects.get(status=Batch.Status.FAILED)
    failed_delete = BatchFactory(table="external_id", kind=Kind.DELETE, last_error_at=LONG_AGO)
    OutboxEntry.objects.create(table="external_id", kind=Kind.DELETE, status=OutboxEntry.Status.BATCHED,
                               batch=failed_delete, row_count=1, payload=b'{"column":"user_id","values":[1]}')
    Batch.objects.filter(pk=failed.pk).update(last_error_at=db_now() - timedelta(days=29))
    assert not purge()  # 29 days: it waits for a requeue

    Batch.objects.filter(pk=failed.pk).update(last_error_at=db_now() - timedelta(days=31))
    caplog.set_level(logging.WARNING, logger="clickhouse_outbox.outbox.purge")
    purged = purge()

    assert purged.failed_batches == 1 and not Batch.objects.filter(pk=failed.pk).exists()
    assert Batch.objects.filter(pk=failed_delete.pk).exists()  # a retirement's delete is never purged unsent
    (record,) = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert re.fullmatch(
        rf"clickhouse_outbox: purged failed batch {failed.pk} of user_profile: 1 row ClickHouse did not take \(error "
        r"code 27\), failed 31\.0 days ago; CLICKHOUSE_OUTBOX_FAILED_RETENTION_DAYS is 30", record.getMessage()
    ), record.getMessage()
    snapshot = with_delivery(Snapshot.objects.filter(producer="user_profile", user_id=ada.pk)).get()
    assert (snapshot.status, snapshot.delivery_state) == (Snapshot.Status.REJECTED, State.REJECTED)


def test_finished_dump_jobs_subjects_go_and_old_jobs_with_them(settings):
    from clickhouse_outbox.dumps.jobs import start_job
    from clickhouse_outbox.dumps.run import run_job

    settings.CLICKHOUSE_OUTBOX_RETENTION_DAYS = 7
    for name in ("ada", "grace", "alan"):
        make_learner(name, name.title())
    jobs = [run_job(dump_profiles()) for _ in range(3)]
    assert DumpJobItem.objects.count() == 9
    DumpJob.objects.filter(pk__in=[job.pk for job in jobs[:2]]).update(finished_at=LONG_AGO)
    running = start_job(DumpJob.Scope.ALL, origin="test", producers=["user_profile"])
    DumpJob.objects.filter(pk=jobs[2].pk).update(finished_at=LONG_AGO)
    DumpJob.objects.filter(pk=running.pk).update(created=LONG_AGO)

    purged = purge()

    assert (purged.dump_items, purged.dump_jobs) == (9, 2)
    assert list(DumpJob.objects.order_by("id").values_list("id", flat=True)) == [jobs[2].pk, running.pk]


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
        assert purge_if_due().sent_batches == old  # this run's turn: the old batches go
        Batch.objects.update(sent_at=LONG_AGO)
        assert purge_if_due() is None  # another run within the interval does not look again
        assert Batch.objects.count() == 3
    finally:
        cache.delete(PURGE_KEY)
    assert purge_if_due().sent_batches == 3


def dump_profiles():
    """A dump job of every profile, listed (a whole-table dump walks key ranges and lists none: dumps.ranges)."""
    from clickhouse_outbox.dumps.jobs import start_job

    profiles = UserProfile.objects.order_by("pk").values_list("pk", flat=True)
    return start_job(DumpJob.Scope.SELECTED, origin="test", subjects=[("user_profile", str(pk)) for pk in profiles])


def footprint(excluded_snapshots):
    """{table: (rows, bytes)} of every table of the app, bytes being its text, binary and JSON values as stored."""
    sizes = {}
    for model in app_tables():
        rows = model.objects.all()
        if model is Snapshot:
            rows = rows.exclude(id__in=excluded_snapshots)
        columns = [field.attname for field in model._meta.concrete_fields if field.get_internal_type() in TEXT_FIELDS]
        values = list(rows.values_list(*columns)) if columns else [()] * rows.count()
        stored = sum(len(as_bytes(value)) if not isinstance(value, (bytes, memoryview)) else len(value)
                     for row in values for value in row)
        sizes[model._meta.db_table] = (len(values), stored)
    return sizes


def test_the_outbox_stays_bounded_under_a_stream_of_changes(server_clickhouse, settings):
    """
    Cycles of changes (a course published twice, two learners renamed twice and changing
    enrollment, a new learner registered, enrolled, dumped whole in a chunk of the profiles,
    rejected by ClickHouse and retired, a dump job, a verification of the course and one of
    the learner tables by key range), each drained and purged with a retention of 0 days.
    Every table's rows and bytes are the same after 5 cycles and after 20; the only rows that
    grow are each retired learner's record, ids only: their retirement and the deleted latest
    snapshot of each of their subjects, which keep their rows from being queued again.
    """
    from clickhouse_outbox.dumps.jobs import start_job
    from clickhouse_outbox.dumps.run import run_job

    settings.CLICKHOUSE_OUTBOX_RETENTION_DAYS = 0
    settings.CLICKHOUSE_OUTBOX_FAILED_RETENTION_DAYS = 0
    drift(server_clickhouse, "external_id", "external_user_id", "UInt32")  # every external id is rejected
    course = PublishedCourseFactory(blocks=10)
    learners = [make_learner("ada", "Ada Lovelace"), make_learner("grace", "Grace Hopper")]
    enrollments = [enroll(user) for user in learners]
    retired = []

    def cycle(n):
        publish_twice(course)
        for user, enrollment in zip(learners, enrollments, strict=True):
            for suffix in ("a", "b"):  # saved twice before the drain: the first is superseded
                profile = UserProfile.objects.get(user=user)
                profile.name = f"{user.username} {n}{suffix}"
                profile.save()
            change_enrollment(enrollment, mode="verified" if n % 2 else "audit")
        # Profile keys of one width (1000 on): the chunk's subject, "keys 1-1019", is as long in every cycle.
        newcomer = make_learner(f"learner{n}", f"Learner {n}", id=1000 + n)
        give_external_id(newcomer)
        enroll(newcomer)
        # A whole-table dump of the profiles: one chunk, holding the newcomer's row, covering the last cycle's.
        run_job(start_job(DumpJob.Scope.ALL, origin="test", producers=["user_profile"]))
        drain_until_settled()
        UserProfile.objects.filter(user=newcomer).update(name=f"Renamed {n}")
        UserProfile.objects.get(user=newcomer).save()
        user_retired(sender=None, user=newcomer)  # their line is taken out of the sent chunk too
        run_job(dump_profiles())
        drain_until_settled()
        verify = DumpJob.Action.VERIFY
        run_job(start_job(DumpJob.Scope.SELECTED, origin="test", subjects=[("course_structure", course.course_key)],
                          action=verify))  # a Verdict kept for the course, replaced by each verification
        run_job(start_job(DumpJob.Scope.ALL, origin="test", producers=["course_enrollment", "external_id",
                                                                       "user_profile"], action=verify))  # cursors
        purge()
        retired.append(newcomer.pk)

    def measure():
        records = Snapshot.objects.filter(user_id__in=retired)
        assert not OutboxEntry.objects.filter(snapshot__in=records).exists()
        assert not records.exclude(error="").exists() and not records.exclude(digest="").exists()
        assert records.count() == 4 * len(retired)  # retirement, profile, enrollment, external id: ids only
        return footprint(list(records.values_list("id", flat=True)))

    for n in range(5):
        cycle(n)
    after_5 = measure()
    for n in range(5, 20):
        cycle(n)
    after_20 = measure()

    assert after_20 == after_5
    assert not OutboxEntry.objects.exists() and not Batch.objects.exists()  # all sent, rejected or removed: purged
    # Each subject's latest: a course, two profiles, two enrollments; and the profiles' newest chunk.
    assert after_5["clickhouse_outbox_snapshot"][0] == 6
    rows = {table: after_5[f"clickhouse_outbox_{table}"][0] for table in (
        "dumpjob", "dumpjobitem", "dumpcursor", "dumpchunk", "sweptrange", "verdict")}
    # The latest job of each action (the listed dump, the verification by key range, with its three cursors);
    # the newest chunk; the one range of the sweep's grid the profiles' keys fall in; the course's verdict
    # (the learners' are ok, counted on the cursors, not kept).
    assert rows == {"dumpjob": 2, "dumpjobitem": 0, "dumpcursor": 3, "dumpchunk": 1, "sweptrange": 1, "verdict": 1}


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's plans follow the indexes alone; the other "
                    "databases' planners choose by table statistics, and these tables are tiny")
def test_a_purge_reads_every_table_through_an_index(chdb_clickhouse, settings):
    """
    With every kind of row there is to purge, no statement of the purge scans a table
    (SQLite's EXPLAIN QUERY PLAN says SEARCH ... USING INDEX, not SCAN), nor sorts what it
    found before taking a chunk of it, except dump jobs: one row per job, and the purge
    deletes the old ones.
    """
    from clickhouse_outbox.dumps.run import run_job

    settings.CLICKHOUSE_OUTBOX_RETENTION_DAYS = 7
    settings.CLICKHOUSE_OUTBOX_FAILED_RETENTION_DAYS = 7
    publish_twice()
    ada, _ = make_learner(), make_learner("grace", "Grace Hopper")
    drift(chdb_clickhouse, "user_profile", "name", "UInt32")
    drain_until_settled()
    user_retired(sender=None, user=ada)
    run_job(dump_profiles())
    age_everything()
    DumpJob.objects.update(finished_at=LONG_AGO)

    with CaptureQueriesContext(connection) as queries:
        purged = purge()
    assert purged.sent_batches and purged.split_batches and purged.failed_batches and purged.entries
    assert purged.snapshots and purged.dump_items

    scans = []
    with connection.cursor() as cursor:
        for query in queries.captured_queries:
            sql = query["sql"]
            if not re.match(r"(SELECT|UPDATE|DELETE)\b", sql):
                continue
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
            scans += [(detail, sql) for *_, detail in cursor.fetchall()
                      if re.match(r"SCAN clickhouse_outbox_(?!dumpjob\b)|USE TEMP B-TREE FOR ORDER BY", detail)]
    assert not scans, scans


def test_a_dismissed_snapshot_goes_once_its_subject_has_a_newer_one_and_stays_as_the_latest(olx_dir, settings):
    """
    A dismissed snapshot (a failed one of a subject the source did not know) holds no rows:
    it goes like any emptied snapshot once a newer snapshot of its subject exists and the
    period passed; while it is its subject's latest, it stays.
    """
    from clickhouse_outbox.operations.requeue import dismiss_unknown
    from clickhouse_outbox.receivers import course_published

    settings.CLICKHOUSE_OUTBOX_RETENTION_DAYS = 7
    course = PublishedCourseFactory(blocks=3)
    gone = "course-v1:GoneX+Never+2026"
    for key in (str(course.course_key), gone):
        course_published(sender=None, course_key=key)  # the course folder is empty: each snapshot fails
    dismissed, kept = dismiss_unknown(Snapshot.objects.filter(status=Snapshot.Status.FAILED))
    assert len(dismissed) == 2 and not kept
    first, latest = publish_twice(course)  # the course is known now: the first is superseded, never sent
    age_everything()

    purged = purge()

    remaining = dict(Snapshot.objects.values_list("id", "status"))
    assert [snapshot.id for snapshot in dismissed if snapshot.id in remaining] == [
        snapshot.id for snapshot in dismissed if snapshot.subject == gone
    ]  # the course's dismissed snapshot went; the unknown course's, its latest, stays
    assert first.id not in remaining and remaining[latest.id] == Snapshot.Status.QUEUED
    assert purged.snapshots == 2 and latest.entries.filter(status=OutboxEntry.Status.PENDING).count() == 3


def test_chunks_of_whole_table_dumps_go_once_newer_chunks_hold_every_key_of_their_range(clickhouse, settings):
    """
    Each chunk's subject is its key range, which the next dump's chunks seldom repeat (here the
    chunk size changed): a sent chunk of a finished job goes after the retention period once
    newer chunks hold every one of its keys, its DumpChunk with it; one a newer chunk holds
    only part of stays, and the newest chunk of each key is what a verification finds.
    """
    from clickhouse_outbox.dumps.jobs import start_job
    from clickhouse_outbox.dumps.run import run_job
    from clickhouse_outbox.models import DumpChunk
    from clickhouse_outbox.outbox import registry
    from clickhouse_outbox.reconcile.verify import covering_chunks

    settings.CLICKHOUSE_OUTBOX_RETENTION_DAYS = 7
    for index in range(5):
        make_learner(f"learner{index}", f"Learner {index}")
    Snapshot.objects.all().delete()  # made before install
    keys = [str(pk) for pk in UserProfile.objects.order_by("pk").values_list("pk", flat=True)]
    producer = registry.get("user_profile")

    def whole_dump(size, **options):
        settings.CLICKHOUSE_OUTBOX_BACKFILL_CHUNK_ROWS = size
        job = run_job(start_job(DumpJob.Scope.ALL, origin="test", producers=["user_profile"]), **options)
        drain_until_settled()
        age_everything()
        DumpJob.objects.exclude(finished_at=None).update(finished_at=LONG_AGO)
        return job

    def chunks(job):
        return sorted(DumpChunk.objects.filter(job=job).values_list("key_from", "key_to", "snapshot_id"))

    first_job = whole_dump(2)
    first = chunks(first_job)  # two keys each: the profiles' 1st-2nd, 3rd-4th, 5th
    second_job = whole_dump(3, max_seconds=0)  # stopped after its first chunk: the 1st-3rd
    assert second_job.status == DumpJob.Status.RUNNING
    [newer] = chunks(second_job)
    purge()
    # The 1st-2nd are held by the newer chunk; the 3rd-4th only in part, the 5th not at all: they stay.
    assert chunks(first_job) == first[1:]
    assert not Snapshot.objects.filter(id=first[0][2]).exists()
    assert set(covering_chunks(producer, keys).values()) == {newer[2], first[1][2], first[2][2]}

    run_job(second_job)  # keys 4-5: the second dump is done
    drain_until_settled()
    age_everything()
    DumpJob.objects.update(finished_at=LONG_AGO)
    purge()
    assert not DumpChunk.objects.filter(snapshot_id__in=[chunk[2] for chunk in first]).exists()
    assert not Snapshot.objects.filter(id__in=[chunk[2] for chunk in first]).exists()
    latest = chunks(second_job)
    assert [chunk[:2] for chunk in latest] == [(1, int(keys[2])), (int(keys[2]) + 1, int(keys[4]))]
    assert set(covering_chunks(producer, keys).values()) == {chunk[2] for chunk in latest}
    assert Snapshot.objects.filter(id__in=[chunk[2] for chunk in latest]).count() == 2
