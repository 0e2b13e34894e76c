"""
Full dumps of every producer, not only courses: `outbox_requeue --all --producer NAME`, the
peer's `dump_data_to_clickhouse --object MODEL [--ids ... --ids_to_skip ... --start_pk ...
--limit ... --batch_size ...]`, and `outbox_requeue --producer NAME ID...`, all on the dump
job code (a job, its items, chunks written one transaction each), then delivered.
"""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.models import DumpChunk, DumpJob, DumpJobItem, Snapshot
from clickhouse_outbox.outbox.drain import drain_until_empty
from clickhouse_outbox.receivers import user_retired
from outbox_project.platform.models import CourseEnrollment, UserProfile
from tests.learners import enroll, make_learner

pytestmark = pytest.mark.django_db


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def learners(settings):
    """Five learners, each enrolled; their own snapshots forgotten (as if the plugin came after them)."""
    users = [make_learner(f"user{n}", f"User {n}") for n in range(5)]
    for user in users:
        enroll(user)
    Snapshot.objects.all().delete()
    return users


def dumped(job, producer):
    """The subjects a job queued: its items done, and the rows of its chunks (a whole-table dump walks key ranges)."""
    items = job.items.filter(producer=producer, status=DumpJobItem.Status.DONE).values_list("subject", flat=True)
    chunked = [str(json.loads(line)["id"]) for chunk in DumpChunk.objects.filter(job=job, producer=producer)
               for entry in chunk.snapshot.entries.all() for line in entry.lines().splitlines()]
    return sorted([*items, *chunked], key=int)


def test_requeue_all_of_a_producer_is_a_dump_job_that_then_delivers(learners, clickhouse):
    out, _ = run("outbox_requeue", "--all", "--producer", "course_enrollment")
    job = DumpJob.objects.get()
    assert (job.producer_names, job.status, job.description) == (["course_enrollment"], "done", "all enrollments")
    assert f"Dump job {job.pk} done: 5 of 5 enrollments (5 queued)." in out
    assert dumped(job, "course_enrollment") == [str(pk) for pk in CourseEnrollment.objects.order_by("pk").values_list("pk", flat=True)]
    assert drain_until_empty(timeout=30)[0].ok
    rows = clickhouse.query(f"SELECT username FROM {qualified_name(clickhouse.database, 'course_enrollment')}")
    assert sorted(row["username"] for row in rows) == [f"user{n}" for n in range(5)]


def test_several_producers_in_one_job_each_in_chunks_of_its_own(learners, settings):
    settings.CLICKHOUSE_OUTBOX_DUMP_CHUNK_ROWS = 2
    run("outbox_requeue", "--all", "--producer", "user_profile", "--producer", "external_id",
        "--producer", "course_enrollment")
    job = DumpJob.objects.get()
    assert job.producer_names == ["user_profile", "external_id", "course_enrollment"]
    assert len(dumped(job, "user_profile")) == len(dumped(job, "course_enrollment")) == 5
    assert not dumped(job, "external_id")  # nobody has one
    reasons = set(Snapshot.objects.values_list("producer", "reason"))
    assert reasons == {("user_profile", "backfill"), ("course_enrollment", "backfill")}  # one chunk each


def test_requeue_named_subjects_of_a_producer_and_a_typo(learners):
    profiles = [str(pk) for pk in UserProfile.objects.order_by("pk").values_list("pk", flat=True)]
    out, _ = run("outbox_requeue", "--producer", "user_profile", *profiles[:2])
    assert "2 of 2 user profiles queued." in out
    with pytest.raises(CommandError, match="'x1' is not user profile id"):
        run("outbox_requeue", "--producer", "user_profile", "x1")
    with pytest.raises(CommandError, match="1 user profile could not be queued"):
        run("outbox_requeue", "--producer", "user_profile", "999999")
    with pytest.raises(CommandError, match="no producer is called 'users'"):
        run("outbox_requeue", "--producer", "users", "1")
    with pytest.raises(CommandError, match="--changed-since dumps courses only"):
        run("outbox_requeue", "--changed-since", "2026-01-01", "--producer", "user_profile")


def test_dump_data_to_clickhouse_takes_the_peers_options(learners):
    profiles = [str(pk) for pk in UserProfile.objects.order_by("pk").values_list("pk", flat=True)]
    out, _ = run("dump_data_to_clickhouse", "--object", "user_profile", "--batch_size", "2", "--force")
    job = DumpJob.objects.latest("id")
    assert (job.scope, job.origin, dumped(job, "user_profile")) == (DumpJob.Scope.ALL, "dump_data_to_clickhouse",
                                                                     profiles)
    assert "5 of 5 user profiles (5 queued)" in out

    run("dump_data_to_clickhouse", "--object", "user_profile", "--ids", *profiles[:3], "--ids_to_skip", profiles[1])
    assert dumped(DumpJob.objects.latest("id"), "user_profile") == [profiles[0], profiles[2]]
    run("dump_data_to_clickhouse", "--object", "user_profile", "--start_pk", profiles[2], "--limit", "1")
    assert dumped(DumpJob.objects.latest("id"), "user_profile") == [profiles[3]]
    with pytest.raises(CommandError, match="1 course could not be queued"):  # course_overviews: courses, by key
        run("dump_data_to_clickhouse", "--object", "course_overviews", "--ids", "course-v1:Nobody+N1+2026")
    assert DumpJob.objects.latest("id").producer_names == ["course_structure"]


def test_dump_data_to_clickhouse_with_several_objects_dumps_them_in_one_job(learners):
    out, _ = run("dump_data_to_clickhouse", "--object", "user_profile", "--object", "course_enrollment",
                 "--object", "user_profile")
    job = DumpJob.objects.get()
    assert job.producer_names == ["user_profile", "course_enrollment"]  # each once, in the order given
    assert dumped(job, "user_profile") == [str(pk) for pk in UserProfile.objects.order_by("pk").values_list("pk", flat=True)]
    assert dumped(job, "course_enrollment") == [
        str(pk) for pk in CourseEnrollment.objects.order_by("pk").values_list("pk", flat=True)]
    assert f"Dump job {job.pk} done: 10 of 10" in out


@pytest.mark.parametrize(("args", "message"), [
    (("--object", "auth_user"), "auth_user is the retirement sink"),
    (("--object", "user_profile", "--object", "users"), "Unknown --object 'users'"),
    (("--object", "user_profile", "--object", "course_enrollment", "--ids", "1"),
     "--ids, --ids_to_skip, --start_pk and --limit apply to one --object"),
    (("--object", "user_profile", "--object", "external_id", "--start_pk", "1"), "apply to one --object"),
    (("--object", "users"), "Unknown --object 'users'; choose one of: course_enrollment, course_overviews"),
    (("--object", "user_profile", "--password", "s3cret"), "--password: the connection now comes only from"),
    (("--object", "user_profile", "--limit", "2", "--force"), "--limit cannot be used with --force"),
    (("--object", "user_profile", "--ids", "abc"), "'abc' is not user profile id"),
])
def test_dump_data_to_clickhouse_refuses_what_it_cannot_do(learners, args, message):
    with pytest.raises(CommandError, match=message) as refused:
        run("dump_data_to_clickhouse", *args)
    assert "s3cret" not in str(refused.value)
    assert not DumpJob.objects.exists()


def test_a_retired_users_profile_is_not_dumped(learners):
    user_retired(sender=None, user=learners[0])
    run("dump_data_to_clickhouse", "--object", "user_profile")
    job = DumpJob.objects.get()
    profiles = [str(pk) for pk in UserProfile.objects.order_by("pk").values_list("pk", flat=True)]
    assert dumped(job, "user_profile") == profiles[1:]
    run("dump_data_to_clickhouse", "--object", "user_profile", "--ids", profiles[0])  # selected: says why
    item = DumpJob.objects.latest("id").items.get(subject=profiles[0])
    assert (item.status, item.error, item.snapshot_id) == (DumpJobItem.Status.DONE, "not queued: its user was retired",
                                                          None)
