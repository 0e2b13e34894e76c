"""
The management commands that run a dump job in the foreground: `outbox_requeue
--all-courses` (or `--changed-since` the same time) joins the same dump already under way
and refuses any other, `--run-dump-job` works on the one under way (started in the admin,
no celery worker), `--changed-since` dumps what changed, and the exit status says whether
every course was queued. (Two processes at once: test_concurrency.py.)
"""

import io
import os
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command

from clickhouse_outbox.dumps.jobs import start_job
from clickhouse_outbox.models import DumpJob, DumpJobItem, Snapshot
from tests.factories import as_courses
from tests.dumps.helpers import add_courses, course_folder, dump_snapshots_per_course

pytestmark = pytest.mark.django_db


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_all_courses_joins_the_dump_of_all_courses_under_way(olx_source, tmp_path):
    keys = add_courses(olx_source, tmp_path / "exports", 4)
    job = start_job(DumpJob.Scope.ALL, origin="admin")

    out, _ = run("outbox_requeue", "--all-courses")

    assert f"Dump job {job.pk} (all courses) is already under way (0 of 0 courses (0 queued)); working on it " \
           "with the others." in out
    assert f"Dump job {job.pk} done: 4 of 4 courses (4 queued)." in out
    assert list(DumpJob.objects.all()) == [job]
    job.refresh_from_db()
    assert (job.status, job.origin) == (DumpJob.Status.DONE, "admin")
    assert dump_snapshots_per_course() == dict.fromkeys(keys, 1)


@pytest.mark.parametrize(("under_way", "asked"), [
    ({"scope": DumpJob.Scope.ALL}, ("--changed-since", "2030-01-01T00:00")),
    ({"scope": DumpJob.Scope.CHANGED, "changed_since": datetime(2030, 1, 1, tzinfo=UTC)}, ("--all-courses",)),
    ({"scope": DumpJob.Scope.CHANGED, "changed_since": datetime(2030, 1, 1, tzinfo=UTC)},
     ("--changed-since", "2030-01-01T00:01")),
    ({"scope": DumpJob.Scope.SELECTED, "subjects": as_courses(["course-v1:DumpX+C000+R1"])}, ("--all-courses",)),
], ids=["all-then-changed", "changed-then-all", "another-time", "selected-then-all"])
def test_a_different_dump_is_refused_while_one_is_under_way(olx_source, tmp_path, under_way, asked):
    add_courses(olx_source, tmp_path / "exports", 2)
    job = start_job(origin="admin", **under_way)
    progress = ", 0 of 1 course done" if job.scope == DumpJob.Scope.SELECTED else ""  # listed at the start
    with pytest.raises(CommandError, match=rf"^Dump job {job.pk} \({job.description}, queued{progress}\) is under "
                                           r"way, and two dumps cannot run at once\."):
        run("outbox_requeue", *asked)
    assert list(DumpJob.objects.all()) == [job]
    assert DumpJob.objects.get().status == DumpJob.Status.QUEUED
    assert not Snapshot.objects.exists()


def test_changed_since_the_same_time_joins_the_dump_under_way(olx_source, tmp_path):
    keys = add_courses(olx_source, tmp_path / "exports", 2)
    job = start_job(DumpJob.Scope.CHANGED, origin="admin", changed_since=datetime(2000, 1, 1, tzinfo=UTC))
    out, _ = run("outbox_requeue", "--changed-since", "2000-01-01T00:00")
    assert f"Dump job {job.pk} (courses changed since 2000-01-01 00:00:00 UTC) is already under way" in out
    assert f"Dump job {job.pk} done: 2 of 2 courses (2 queued)." in out
    assert list(DumpJob.objects.all()) == [job]
    assert dump_snapshots_per_course() == dict.fromkeys(keys, 1)


def test_named_courses_are_queued_while_a_dump_is_under_way(olx_source, tmp_path):
    keys = add_courses(olx_source, tmp_path / "exports", 2)
    job = start_job(DumpJob.Scope.ALL, origin="admin")
    out, _ = run("outbox_requeue", keys[0])
    assert "1 of 1 course queued." in out
    assert list(DumpJob.objects.all()) == [job] and not job.items.exists()
    assert Snapshot.objects.get().reason == "requeue"


def test_run_dump_job_works_on_the_job_under_way_and_says_when_there_is_none(olx_source, tmp_path):
    with pytest.raises(CommandError, match="^No dump job is under way.$"):
        run("outbox_requeue", "--run-dump-job")
    keys = add_courses(olx_source, tmp_path / "exports", 3)
    job = start_job(DumpJob.Scope.SELECTED, origin="admin", subjects=as_courses(keys[1:]))
    out, _ = run("outbox_requeue", "--run-dump-job")
    assert f"Dump job {job.pk} done: 2 of 2 courses (2 queued)." in out
    job.refresh_from_db()
    assert (job.status, job.active) == (DumpJob.Status.DONE, None)
    assert dump_snapshots_per_course() == dict.fromkeys(keys[1:], 1)


def test_changed_since_dumps_only_what_changed(olx_source, tmp_path):
    keys = add_courses(olx_source, tmp_path / "exports", 3)
    now = datetime.now(UTC)
    old = int((now - timedelta(days=3)).timestamp())
    os.utime(course_folder(olx_source, keys[0]), (old, old))

    out, _ = run("outbox_requeue", "--changed-since", (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"))

    job = DumpJob.objects.get()
    assert (job.scope, job.status) == (DumpJob.Scope.CHANGED, DumpJob.Status.DONE)
    assert f"Dump job {job.pk} done: 2 of 2 courses (2 queued)." in out
    assert dump_snapshots_per_course() == dict.fromkeys(keys[1:], 1)


def test_a_course_that_could_not_be_queued_is_named_and_fails_the_command(olx_source, tmp_path):
    keys = add_courses(olx_source, tmp_path / "exports", 3)
    (course_folder(olx_source, keys[2]) / "course" / "R1.xml").write_text("<course")
    out, err = io.StringIO(), io.StringIO()

    with pytest.raises(CommandError, match="^1 course could not be queued; see the dump job in the admin.$") as failed:
        call_command("outbox_requeue", "--all-courses", stdout=out, stderr=err)

    assert failed.value.returncode == 1
    job = DumpJob.objects.get()
    assert f"Dump job {job.pk} done: 3 of 3 courses (2 queued, 1 failed)." in out.getvalue()
    assert f"Not queued: {keys[2]}: " in err.getvalue() and "malformed XML" in err.getvalue()
    assert dump_snapshots_per_course() == dict.fromkeys(keys, 1)  # the failed one is kept, for --failed
    assert DumpJobItem.objects.filter(job=job, status=DumpJobItem.Status.FAILED).count() == 1
