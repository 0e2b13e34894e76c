"""
Dump jobs on a real database, one worker at a time: what a job lists (every course, those
changed since a time, a chosen list), how its courses are claimed (position order, chunk
size, leases that expire and are taken over), what each course leaves behind (one snapshot
with reason "dump", a failed row, a failed snapshot where a requeue must take it again),
and how a run stops (done, cancelled, out of time) and how jobs exclude each other.

Concurrency between workers is in test_concurrency.py; a SIGKILLed celery worker in
test_worker_restart.py.
"""

import io
import os
import shutil
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from clickhouse_outbox.db import db_now
from clickhouse_outbox.dumps import run
from clickhouse_outbox.dumps.jobs import (
    DumpAlreadyActive,
    active_job,
    cancel_job,
    job_progress,
    progress_line,
    start_job,
)
from clickhouse_outbox.dumps.run import (
    REASON,
    Producers,
    claim_items,
    claimable,
    finish_if_done,
    plan,
    release,
    run_job,
    take_chunk,
)
from clickhouse_outbox.models import DumpJob, DumpJobItem, OutboxEntry, Snapshot
from clickhouse_outbox.operations.requeue import failed_subjects
from clickhouse_outbox.producers.course_structure import PRODUCER, take_course_snapshot
from clickhouse_outbox.sources.base import CourseSource
from clickhouse_outbox.sources.olx import OlxFolderSource
from tests.dumps.helpers import (
    add_courses,
    course_folder,
    course_rows,
    dump_snapshots_per_course,
    export_path,
    statuses,
    wait_until,
)
from tests.factories import CourseSnapshotFactory, MemorySource, PublishedCourseFactory, as_courses, with_source

pytestmark = pytest.mark.django_db

ALL, CHANGED, SELECTED = DumpJob.Scope.ALL, DumpJob.Scope.CHANGED, DumpJob.Scope.SELECTED
PENDING, CLAIMED, DONE, FAILED = (DumpJobItem.Status.PENDING, DumpJobItem.Status.CLAIMED,
                                  DumpJobItem.Status.DONE, DumpJobItem.Status.FAILED)


@pytest.fixture
def exports(tmp_path):
    return tmp_path / "exports"


def new_job(scope=ALL, **kwargs):
    return start_job(scope, origin="test", **kwargs)


def listed(job):
    return list(job.items.order_by("position").values_list("subject", "position", "status"))


def set_mtime(path, when):
    ns = int(when.timestamp()) * 1_000_000_000
    os.utime(path, ns=(ns, ns))


# -- planning ------------------------------------------------------------------------------


def test_planning_lists_every_course_the_source_knows_including_never_snapshotted_ones(olx_source, exports):
    keys = add_courses(olx_source, exports, 5)
    take_course_snapshot(keys[1], "published", source=olx_source)  # one course was published before
    stranger = CourseSnapshotFactory()  # a snapshot of a course the folder does not hold
    job = new_job()
    assert (job.status, job.active, job.items.count()) == (DumpJob.Status.QUEUED, True, 0)

    assert plan(job, with_source(olx_source)) is True
    job.refresh_from_db()
    assert job.status == DumpJob.Status.RUNNING and job.started_at is not None
    assert listed(job) == [(key, position, PENDING) for position, key in enumerate(keys)]
    assert stranger.subject not in {key for key, _, _ in listed(job)}

    # A second worker planning the same job changes nothing.
    assert plan(job, with_source(olx_source)) is False
    assert listed(job) == [(key, position, PENDING) for position, key in enumerate(keys)]


def test_changed_since_picks_the_course_folders_changed_at_or_after_the_time(olx_source, exports):
    keys = add_courses(olx_source, exports, 4)
    since = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    before, at, after, long_before = keys
    for key, when in ((before, since - timedelta(seconds=1)), (at, since), (after, since + timedelta(hours=1)),
                      (long_before, since - timedelta(days=400))):
        set_mtime(course_folder(olx_source, key), when)
    job = new_job(CHANGED, changed_since=since)
    assert job.description == "courses changed since 2031-05-06 07:08:09 UTC"

    job = run_job(job, producers=with_source(olx_source))

    assert listed(job) == [(at, 0, DONE), (after, 1, DONE)]
    assert dump_snapshots_per_course() == {at: 1, after: 1}
    assert job.status == DumpJob.Status.DONE


def test_changed_since_picks_an_export_added_again_after_the_time(olx_source, exports):
    keys = add_courses(olx_source, exports, 3)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    for key in keys:
        set_mtime(course_folder(olx_source, key), an_hour_ago - timedelta(hours=1))
    set_mtime(export_path(exports, 1), an_hour_ago - timedelta(days=2))  # the export's own time is old
    olx_source.add_export(export_path(exports, 1))  # republished: add_export puts the folder's time now

    job = run_job(new_job(CHANGED, changed_since=an_hour_ago), producers=with_source(olx_source))

    assert listed(job) == [(keys[1], 0, DONE)]
    assert dump_snapshots_per_course() == {keys[1]: 1}


def test_changed_since_on_a_source_that_dates_its_courses_in_memory():
    since = datetime(2030, 3, 1, tzinfo=UTC)
    courses = [PublishedCourseFactory(blocks=8) for _ in range(4)]
    for course, modified in zip(courses, (since - timedelta(microseconds=1), since, since + timedelta(days=3), None)):
        course.modified = modified
    source = MemorySource(courses)

    job = run_job(new_job(CHANGED, changed_since=since), producers=with_source(source))

    expected = sorted(str(course.course_key) for course in courses[1:3])
    assert [key for key, _, _ in listed(job)] == expected
    assert dump_snapshots_per_course() == dict.fromkeys(expected, 1)
    assert job.status == DumpJob.Status.DONE


class UndatedSource(CourseSource):
    """A source that lists its courses but cannot tell when they changed (the base class's default)."""

    def course_keys(self):
        return []


@pytest.mark.parametrize("case", ["no OLX folder", "cannot tell what changed"])
def test_a_source_that_cannot_list_fails_the_job_with_the_reason_and_frees_the_slot(case):
    if case == "no OLX folder":
        job, source, reason = new_job(), OlxFolderSource(root=""), "No OLX folder: set CLICKHOUSE_OUTBOX_OLX_DIR"
    else:
        job, source = new_job(CHANGED, changed_since=datetime(2030, 1, 1, tzinfo=UTC)), UndatedSource()
        reason = "UndatedSource cannot tell which courses changed since a time; dump all courses instead."

    job = run_job(job, producers=with_source(source))

    assert (job.status, job.active, job.error) == (DumpJob.Status.FAILED, None, reason)
    assert job.finished_at is not None and job.started_at is None
    assert not job.items.exists() and not Snapshot.objects.exists()
    assert active_job() is None
    assert new_job().active is True  # the slot is free for the next job


def test_selected_scope_lists_the_chosen_courses_once_in_the_given_order_without_asking_the_source(
    olx_source, exports, monkeypatch
):
    keys = add_courses(olx_source, exports, 4)
    job = new_job(SELECTED, subjects=as_courses([keys[2], keys[0], keys[2]]))
    assert listed(job) == [(keys[2], 0, PENDING), (keys[0], 1, PENDING)]  # listed when started, once each

    def no_listing():
        raise AssertionError("a selected dump must not list the source's courses")

    monkeypatch.setattr(olx_source, "course_keys", no_listing)
    job = run_job(job, producers=with_source(olx_source))

    assert listed(job) == [(keys[2], 0, DONE), (keys[0], 1, DONE)]
    assert dump_snapshots_per_course() == {keys[2]: 1, keys[0]: 1}


def test_a_job_that_names_no_course_or_no_time_is_not_started():
    with pytest.raises(ValueError, match="at least one"):
        new_job(SELECTED, subjects=as_courses([]))
    with pytest.raises(ValueError, match="needs that time"):
        new_job(CHANGED)
    assert not DumpJob.objects.exists()


# -- claiming ------------------------------------------------------------------------------


def running_job_with_positions(positions):
    """A running job whose course rows are created (ids ascending) with these positions."""
    job = new_job()
    DumpJob.objects.filter(pk=job.pk).update(status=DumpJob.Status.RUNNING)
    DumpJobItem.objects.bulk_create([
        DumpJobItem(job=job, subject=f"course-v1:Claim+P{position:02d}+R1", position=position)
        for position in positions
    ])
    job.refresh_from_db()
    return job


def test_courses_are_claimed_in_position_order_a_chunk_at_a_time_and_never_twice():
    job = running_job_with_positions(reversed(range(7)))  # ids and positions in opposite orders
    owners = [uuid.uuid4() for _ in range(4)]

    chunks = [claim_items(job, owner, Producers(), 3) for owner in owners]

    assert [[row.position for row in chunk] for chunk in chunks] == [[0, 1, 2], [3, 4, 5], [6], []]
    now = db_now()
    for owner, chunk in zip(owners, chunks):
        for row in DumpJobItem.objects.filter(id__in=[row.id for row in chunk]):
            assert (row.status, row.lease_owner) == (CLAIMED, owner)
            assert now < row.lease_expires_at <= now + timedelta(seconds=300 + 5)
    assert not claimable(job).exists()


def test_only_a_running_job_gives_out_courses():
    job = running_job_with_positions(range(3))
    DumpJob.objects.filter(pk=job.pk).update(status=DumpJob.Status.QUEUED)
    assert claim_items(job, uuid.uuid4(), Producers(), 10) == []
    cancel_job(job)
    assert claim_items(job, uuid.uuid4(), Producers(), 10) == []
    assert statuses(job) == {PENDING: 3}


@pytest.mark.parametrize(("chunk_size", "setting", "sizes"), [(3, 20, [3, 3, 1, 0]), (None, 4, [4, 3, 0])])
def test_run_job_claims_chunks_of_the_size_asked_for_or_set(olx_source, exports, settings, monkeypatch, chunk_size,
                                                            setting, sizes):
    settings.CLICKHOUSE_OUTBOX_DUMP_CHUNK_COURSES = setting
    add_courses(olx_source, exports, 7)
    claimed = []
    real_claim = run.claim_items

    def spy(job, owner, found, size):
        rows = real_claim(job, owner, found, size)
        claimed.append(len(rows))
        return rows

    monkeypatch.setattr(run, "claim_items", spy)
    job = run_job(new_job(), producers=with_source(olx_source), chunk_size=chunk_size)

    assert claimed == sizes
    assert job.status == DumpJob.Status.DONE


def test_a_worker_that_loses_a_claim_race_goes_on_with_the_courses_left(olx_source, exports, monkeypatch):
    """
    run_job stops only when nothing is left to claim. A claim whose compare-and-swap lost
    every course it had read (another worker took them in between) is not that: courses
    are still pending. (Fails today: claim_items returns [] and run_job stops.)
    """
    keys = add_courses(olx_source, exports, 6)
    job = new_job()
    plan(job, with_source(olx_source))
    rival = uuid.uuid4()
    real_claimable = run.claimable
    calls = []

    def rival_claims_between_the_read_and_the_update(of_job, *abandoned):
        # claim_items reads the next ids (first call), then swaps them (second call): on the
        # worker's first claim another worker claims the same chunk in between.
        calls.append(of_job)
        if len(calls) == 2:
            assert len(claim_items(of_job, rival, Producers(), 2)) == 2
        return real_claimable(of_job, *abandoned)

    monkeypatch.setattr(run, "claimable", rival_claims_between_the_read_and_the_update)
    outcomes = []
    job = run_job(job, producers=with_source(olx_source), on_item=outcomes.append, chunk_size=2)

    rival_held = set(DumpJobItem.objects.filter(job=job, lease_owner=rival).values_list("subject", flat=True))
    assert rival_held == set(keys[:2])
    # The worker lost the race for its first chunk; the other four courses were still pending.
    assert [outcome.subject for outcome in outcomes] == keys[2:]
    assert statuses(job) == {CLAIMED: 2, DONE: 4}


@pytest.mark.django_db(transaction=True)  # leases run on the database clock: PostgreSQL's is frozen in a transaction
def test_an_expired_lease_is_taken_over_and_the_first_owners_late_take_is_rolled_back(olx_source, exports,
                                                                                      settings):
    settings.CLICKHOUSE_OUTBOX_LEASE_SECS = 1
    keys = add_courses(olx_source, exports, 2)
    job = new_job()
    plan(job, with_source(olx_source))
    stalled, other = uuid.uuid4(), uuid.uuid4()
    stalled_rows = claim_items(job, stalled, Producers(), 10)
    assert len(stalled_rows) == 2
    assert claim_items(job, other, Producers(), 10) == []  # the lease is live

    wait_until(lambda: claimable(job).count() == 2, "the stalled owner's lease to run out (database clock)")
    other_rows = claim_items(job, other, Producers(), 10)
    assert [row.id for row in other_rows] == [row.id for row in stalled_rows]

    first = take_chunk([other_rows[0]], other, Producers(with_source(olx_source)))[0]
    assert first.status == DONE and first.snapshot.reason == REASON

    # The stalled owner wakes up: one course the other has done, one it holds and has not read yet.
    late_done = take_chunk([stalled_rows[0]], stalled, Producers(with_source(olx_source)))[0]
    late_held = take_chunk([stalled_rows[1]], stalled, Producers(with_source(olx_source)))[0]
    assert (late_done.status, late_done.snapshot) == (None, None)
    assert (late_held.status, late_held.snapshot) == (None, None)
    assert dump_snapshots_per_course() == {keys[0]: 1}
    # Its rolled-back snapshot did not supersede the other owner's queued rows either.
    kept = Snapshot.objects.get(pk=first.snapshot.pk)
    assert kept.status == Snapshot.Status.QUEUED
    assert set(kept.entries.values_list("status", flat=True)) == {OutboxEntry.Status.PENDING}
    held = DumpJobItem.objects.get(pk=stalled_rows[1].pk)
    assert (held.status, held.lease_owner, held.snapshot_id) == (CLAIMED, other, None)
    assert release(job, stalled) == 0  # it gives back nothing: it holds nothing

    second = take_chunk([other_rows[1]], other, Producers(with_source(olx_source)))[0]
    assert second.status == DONE
    assert finish_if_done(job) is True
    assert dump_snapshots_per_course() == {keys[0]: 1, keys[1]: 1}
    assert course_rows(job) == {keys[0]: (DONE, first.snapshot.pk, ""), keys[1]: (DONE, second.snapshot.pk, "")}


# -- running a job -------------------------------------------------------------------------


def test_run_job_queues_one_dump_snapshot_per_course_and_finishes_the_job(olx_source, exports):
    keys = add_courses(olx_source, exports, 6)
    published = take_course_snapshot(keys[3], "published", source=olx_source)
    job = new_job()
    outcomes = []

    job = run_job(job, producers=with_source(olx_source), on_item=outcomes.append, chunk_size=4)

    assert (job.status, job.active) == (DumpJob.Status.DONE, None)
    assert job.started_at is not None and job.finished_at is not None
    assert [(outcome.subject, outcome.status, outcome.error) for outcome in outcomes] == [
        (key, DONE, "") for key in keys
    ]
    assert dump_snapshots_per_course() == dict.fromkeys(keys, 1)
    snapshots = {snapshot.subject: snapshot for snapshot in Snapshot.objects.filter(reason=REASON)}
    assert course_rows(job) == {key: (DONE, snapshots[key].pk, "") for key in keys}
    assert {snapshot.status for snapshot in snapshots.values()} == {Snapshot.Status.QUEUED}
    assert all(snapshot.entries.exists() for snapshot in snapshots.values())
    assert not DumpJobItem.objects.filter(lease_owner__isnull=False).exists()
    # The dump went through the outbox as a publish does: the older pending rows are superseded.
    published.refresh_from_db()
    assert published.status == Snapshot.Status.SUPERSEDED
    assert job_progress(job) == {"total": 6, "done": 6, "failed": 0, "left": 0}
    assert progress_line(job) == "6 of 6 courses (6 queued)"

    # Running a finished job again does nothing.
    assert run_job(job, producers=with_source(olx_source)).status == DumpJob.Status.DONE
    assert dump_snapshots_per_course() == dict.fromkeys(keys, 1)


def test_a_course_the_source_does_not_know_fails_its_row_and_records_no_failed_snapshot(olx_source, exports):
    keys = add_courses(olx_source, exports, 3)
    job = new_job()
    plan(job, with_source(olx_source))
    shutil.rmtree(course_folder(olx_source, keys[1]))  # deleted after the job listed it
    outcomes = []

    job = run_job(job, producers=with_source(olx_source), on_item=outcomes.append)

    assert job.status == DumpJob.Status.DONE
    rows = course_rows(job)
    assert rows[keys[1]] == (FAILED, None, f"{keys[1]}: no OLX export in {olx_source.root}")
    assert [rows[key][0] for key in (keys[0], keys[2])] == [DONE, DONE]
    assert [(outcome.status, outcome.error) for outcome in outcomes if outcome.subject == keys[1]] == [
        (FAILED, f"{keys[1]}: no OLX export in {olx_source.root}")
    ]
    assert not Snapshot.objects.filter(subject=keys[1]).exists()
    assert keys[1] not in failed_subjects(PRODUCER)
    assert job_progress(job) == {"total": 3, "done": 2, "failed": 1, "left": 0}
    assert progress_line(job) == "3 of 3 courses (2 queued, 1 failed)"


def test_an_unknown_selected_course_fails_its_row_and_records_no_failed_snapshot(olx_source, exports):
    keys = add_courses(olx_source, exports, 1)
    unknown = "course-v1:No+Such+Course"
    job = run_job(new_job(SELECTED, subjects=as_courses([unknown, keys[0]])), producers=with_source(olx_source))
    assert job.status == DumpJob.Status.DONE
    assert course_rows(job)[unknown][0] == FAILED
    assert not Snapshot.objects.filter(subject=unknown).exists()
    assert dump_snapshots_per_course() == {keys[0]: 1}


def test_a_course_that_cannot_be_read_fails_its_row_and_leaves_a_failed_snapshot_for_requeue(olx_source, exports):
    keys = add_courses(olx_source, exports, 3)
    broken = keys[1]
    (course_folder(olx_source, broken) / "course" / "R1.xml").write_text("<course display_name='half written'>")

    job = run_job(new_job(), producers=with_source(olx_source))

    assert job.status == DumpJob.Status.DONE
    status, snapshot_id, error = course_rows(job)[broken]
    assert status == FAILED and "malformed XML" in error and "R1.xml" in error
    failed = Snapshot.objects.get(pk=snapshot_id)
    assert (failed.subject, failed.status, failed.reason) == (broken, Snapshot.Status.FAILED, REASON)
    assert "malformed XML" in failed.error
    assert failed_subjects(PRODUCER) == [broken]
    assert progress_line(job) == "3 of 3 courses (2 queued, 1 failed)"

    # The export is fixed; `outbox_requeue --failed` takes the course again.
    olx_source.add_export(export_path(exports, 1))
    call_command("outbox_requeue", "--failed", stdout=io.StringIO(), stderr=io.StringIO())
    failed.refresh_from_db()
    assert failed.status == Snapshot.Status.SUPERSEDED
    again = Snapshot.objects.filter(subject=broken).order_by("-id").first()
    assert (again.status, again.reason) == (Snapshot.Status.QUEUED, "requeue")
    assert failed_subjects(PRODUCER) == []


# -- stopping ------------------------------------------------------------------------------


def test_cancel_stops_a_run_at_the_next_chunk_and_keeps_the_courses_already_queued(olx_source, exports):
    keys = add_courses(olx_source, exports, 6)
    job = new_job()
    outcomes = []

    def cancel_after_two(outcome):
        outcomes.append(outcome)
        if len(outcomes) == 2:
            assert cancel_job(job) is True

    job = run_job(job, producers=with_source(olx_source), on_item=cancel_after_two, chunk_size=2)  # cancelled in the first chunk

    assert (job.status, job.active) == (DumpJob.Status.CANCELLED, None)
    assert job.finished_at is not None
    assert [outcome.subject for outcome in outcomes] == keys[:2]
    rows = DumpJobItem.objects.filter(job=job)
    assert {row.subject: row.status for row in rows} == {**dict.fromkeys(keys[:2], DONE),
                                                            **dict.fromkeys(keys[2:], PENDING)}
    assert not rows.filter(lease_owner__isnull=False).exists()  # what it had claimed is given back
    assert dump_snapshots_per_course() == dict.fromkeys(keys[:2], 1)
    assert set(Snapshot.objects.values_list("status", flat=True)) == {Snapshot.Status.QUEUED}
    assert not OutboxEntry.objects.exclude(status=OutboxEntry.Status.PENDING).exists()

    assert cancel_job(job) is False  # already stopped
    assert run_job(job, producers=with_source(olx_source)).status == DumpJob.Status.CANCELLED
    assert dump_snapshots_per_course() == dict.fromkeys(keys[:2], 1)
    assert new_job().active is True


def test_a_job_cancelled_before_any_worker_started_is_never_planned(olx_source, exports):
    add_courses(olx_source, exports, 2)
    job = new_job()
    assert cancel_job(job) is True
    job = run_job(job, producers=with_source(olx_source))
    assert (job.status, job.started_at) == (DumpJob.Status.CANCELLED, None)
    assert not job.items.exists() and not Snapshot.objects.exists()


def test_max_seconds_stops_the_run_and_gives_back_the_courses_it_claimed(olx_source, exports):
    keys = add_courses(olx_source, exports, 5)
    job = new_job()
    outcomes = []

    job = run_job(job, producers=with_source(olx_source), on_item=outcomes.append, chunk_size=5, max_seconds=0)

    assert len(outcomes) == 1  # the deadline is looked at after each course
    assert (job.status, job.active) == (DumpJob.Status.RUNNING, True)
    assert statuses(job) == {DONE: 1, PENDING: 4}
    assert not DumpJobItem.objects.filter(job=job, status=PENDING).exclude(
        lease_owner=None, lease_expires_at=None
    ).exists()
    assert job_progress(job) == {"total": 5, "done": 1, "failed": 0, "left": 4}

    job = run_job(job, producers=with_source(olx_source))  # the next worker takes the rest at once, no lease to wait out
    assert job.status == DumpJob.Status.DONE
    assert dump_snapshots_per_course() == dict.fromkeys(keys, 1)


def test_the_run_that_takes_the_last_course_finishes_the_job_even_when_its_time_is_up(olx_source, exports):
    """
    Time running out during the last course must not leave a job with nothing left "running":
    the task sends itself again only while courses are pending, so nothing would finish it
    until the periodic pick-up, a lease period later (5 min by default). Fails today.
    """
    keys = add_courses(olx_source, exports, 1)
    job = run_job(new_job(), producers=with_source(olx_source), max_seconds=0)
    assert statuses(job) == {DONE: 1}
    assert (job.status, job.active) == (DumpJob.Status.DONE, None)
    assert dump_snapshots_per_course() == {keys[0]: 1}


# -- one job at a time ---------------------------------------------------------------------


def test_a_second_job_is_refused_with_a_clear_message_until_the_first_ends(olx_source, exports):
    keys = add_courses(olx_source, exports, 3)
    first = new_job()

    with pytest.raises(DumpAlreadyActive) as refused:
        new_job(SELECTED, subjects=as_courses(keys[:1]))
    assert refused.value.job == first
    assert str(refused.value) == (
        f"Dump job {first.pk} (all courses, queued) is under way, and two dumps cannot run at once. "
        "Wait for it to finish, or cancel it in the admin (ClickHouse outbox > Dump jobs)."
    )
    assert list(DumpJob.objects.all()) == [first]
    assert not DumpJobItem.objects.exists()  # the refused job's course list was rolled back too

    run_job(first, producers=with_source(olx_source), chunk_size=3, max_seconds=0)
    with pytest.raises(DumpAlreadyActive, match=rf"^Dump job {first.pk} \(all courses, running, 1 of 3 courses done\) "
                                                r"is under way, and two dumps cannot run at once\."):
        new_job(CHANGED, changed_since=datetime(2030, 1, 1, tzinfo=UTC))

    assert run_job(first, producers=with_source(olx_source)).status == DumpJob.Status.DONE
    second = new_job(SELECTED, subjects=as_courses(keys[:1]))
    assert (second.status, second.active) == (DumpJob.Status.QUEUED, True)
    assert active_job() == second
