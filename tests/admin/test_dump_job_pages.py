"""
Full dumps from the admin: starting one (all courses, or those changed since a time), the
refusal while one is under way, the job's page following its progress (and reloading
itself only while it runs), and cancelling. The job is run here with `run_job`, as the
celery worker would run it.
"""

import os
from datetime import UTC, datetime, timedelta

import pytest

from clickhouse_outbox.db import db_now
from clickhouse_outbox.dumps.run import run_job
from clickhouse_outbox.models import DumpJob, Snapshot
from clickhouse_outbox.sources.olx import folder_name
from tests.admin import pages
from tests.admin.helpers import COURSES, DUMP_JOBS, post_action, url

pytestmark = pytest.mark.django_db

START = "dumpjob_start"
STARTED = "Celery workers take a snapshot of each course; this page shows their progress."


def job_page(client, job):
    response = client.get(url("dumpjob_change", job.pk))
    assert response.status_code == 200
    return response


def reloads_itself(response):
    return pages.parse(response).find("meta", **{"http-equiv": "refresh"}) is not None


def has_cancel_button(response):
    return pages.parse(response).find(id="cancel-dump") is not None


def test_start_a_dump_of_all_courses(admin_client, admin_user, django_capture_on_commit_callbacks):
    form = admin_client.get(url(START))
    assert form.status_code == 200
    assert pages.checked(form, "scope") == "all"

    with django_capture_on_commit_callbacks(execute=True) as sent:
        response = admin_client.post(url(START), {"scope": "all"})
    job = DumpJob.objects.get()
    assert response.status_code == 302 and response["Location"] == url("dumpjob_change", job.pk)
    assert (job.scope, job.status, job.active, job.origin, job.requested_by) == (
        DumpJob.Scope.ALL, DumpJob.Status.QUEUED, True, "admin", admin_user
    )
    assert len(sent) == 1 and job.dispatched_at is not None  # handed to celery once the job was committed

    page = admin_client.get(response["Location"])
    assert pages.messages(page) == [f"Dump job {job.pk} started: all courses. {STARTED}"]
    assert pages.readonly_field(page, "progress") == "waiting for a celery worker to list the courses"
    assert pages.readonly_field(page, "status") == "Queued"
    assert reloads_itself(page) and has_cancel_button(page)


def test_the_course_views_dump_button_starts_a_dump_of_all_courses(admin_client):
    course_view = pages.parse(admin_client.get(url(COURSES)))
    form = course_view.find("form", id="dump-all-form")
    assert form.attrs["action"] == url(START)
    assert form.find("input", name="scope").attrs["value"] == "all"
    assert course_view.find("a", id="dump-changed").attrs["href"] == url(START) + "?scope=changed"
    response = admin_client.post(form.attrs["action"], {"scope": "all"})
    assert response["Location"] == url("dumpjob_change", DumpJob.objects.get(scope=DumpJob.Scope.ALL).pk)


def test_start_a_dump_of_the_courses_changed_since_a_time(admin_client, add_course, olx_dir):
    old, new = add_course("Old"), add_course("New")
    last_year = (db_now() - timedelta(days=365)).timestamp()
    os.utime(olx_dir / folder_name(old), (last_year, last_year))  # its export was put in place long ago
    since = (db_now() - timedelta(days=1)).replace(microsecond=0, tzinfo=None)

    form = pages.parse(admin_client.get(url(START), {"scope": "changed"}))
    assert pages.checked(form, "scope") == "changed"
    response = admin_client.post(url(START), {"scope": "changed", "changed_since": f"{since:%Y-%m-%dT%H:%M:%S}"},
                                 follow=True)
    job = DumpJob.objects.get()
    assert (job.scope, job.changed_since) == (DumpJob.Scope.CHANGED, since.replace(tzinfo=UTC))
    description = f"courses changed since {since:%Y-%m-%d %H:%M:%S} UTC"
    assert pages.messages(response) == [f"Dump job {job.pk} started: {description}. {STARTED}"]
    assert pages.readonly_field(response, "description") == description

    job = run_job(job)
    assert job.status == DumpJob.Status.DONE
    assert list(Snapshot.objects.filter(reason="dump").values_list("subject", flat=True)) == [new]
    assert pages.readonly_field(job_page(admin_client, job), "progress") == "1 of 1 course (1 queued)"


def test_changed_since_needs_the_time(admin_client):
    response = admin_client.post(url(START), {"scope": "changed", "changed_since": ""})
    assert response.status_code == 200
    assert "Give the time: courses published since then are dumped." in pages.page_text(response)
    assert not DumpJob.objects.exists()


def test_a_second_dump_while_one_is_under_way_is_refused_with_the_reason(admin_client):
    admin_client.post(url(START), {"scope": "all"})
    first = DumpJob.objects.get()
    response = admin_client.post(url(START), {"scope": "changed", "changed_since": "2026-01-01T00:00:00"},
                                 follow=True)
    assert list(DumpJob.objects.all()) == [first]
    assert response.redirect_chain[-1][0] == url("dumpjob_change", first.pk)
    assert pages.messages(response)[-1] == (
        f"Dump job {first.pk} (all courses, queued) is under way, and two dumps cannot run at once. Wait for it to "
        "finish, or cancel it in the admin (ClickHouse outbox > Dump jobs)."
    )
    assert "error" in pages.parse(response).find("ul", class_="messagelist").find_all("li")[-1].classes
    form = admin_client.get(url(START))
    assert pages.parse(form).find("p", class_="errornote").text == (
        f"Dump job {first.pk} (all courses) is under way: a new dump can start once it has finished or been cancelled."
    )


def test_a_jobs_page_follows_its_progress_and_stops_reloading_when_done(
    admin_client, add_course, break_course
):
    keys = [add_course("A"), add_course("B"), add_course("C")]
    break_course(keys[2])
    admin_client.post(url(START), {"scope": "all"})
    job = DumpJob.objects.get()

    job = run_job(job, max_seconds=0)  # a worker lists the courses, takes the first, and its time is up
    assert job.status == DumpJob.Status.RUNNING
    page = job_page(admin_client, job)
    assert pages.readonly_field(page, "progress") == "1 of 3 courses (1 queued)"
    assert pages.readonly_field(page, "status") == "Running"
    assert reloads_itself(page) and has_cancel_button(page)
    assert pages.row_of(admin_client.get(url(DUMP_JOBS)), "id", str(job.pk))["progress"] == "1 of 3 courses (1 queued)"
    summary = pages.by_id(admin_client.get(url(COURSES)), "summary-dump").text
    assert summary == f"dump job {job.pk}: all courses, 1 of 3 courses (1 queued)"

    job = run_job(job)
    assert job.status == DumpJob.Status.DONE
    page = job_page(admin_client, job)
    assert pages.readonly_field(page, "progress") == "3 of 3 courses (2 queued, 1 failed)"
    assert pages.readonly_field(page, "status") == "Done"
    assert not reloads_itself(page) and not has_cancel_button(page)
    failed = pages.readonly_field(page, "failed_courses")
    assert failed.startswith(f"{keys[2]}: ") and "malformed XML" in failed
    assert pages.readonly_field(page, "when_finished").endswith(" after it started")
    assert pages.by_id(admin_client.get(url(COURSES)), "summary-dump").text == "none running"
    assert sorted(Snapshot.objects.filter(reason="dump").values_list("subject", flat=True)) == keys

    # The next dump "changed since" starts, by default, when this one started.
    form = pages.parse(admin_client.get(url(START), {"scope": "changed"}))
    assert form.find("input", name="changed_since").attrs["value"] == f"{job.started_at:%Y-%m-%dT%H:%M:%S}"


def test_cancel_a_running_dump(admin_client, add_course):
    add_course("A")
    add_course("B")
    admin_client.post(url(START), {"scope": "all"}, follow=True)
    job = run_job(DumpJob.objects.get(), max_seconds=0)
    cancel = url("dumpjob_cancel", job.pk)
    assert admin_client.get(cancel).status_code == 405
    assert DumpJob.objects.get(pk=job.pk).status == DumpJob.Status.RUNNING

    response = admin_client.post(cancel, follow=True)
    assert response.redirect_chain[-1][0] == url("dumpjob_change", job.pk)
    assert pages.messages(response) == ["Cancelled 1 dump job; courses already queued stay queued."]
    assert pages.readonly_field(response, "status") == "Cancelled"
    assert pages.readonly_field(response, "progress") == "1 of 2 courses (1 queued)"
    assert not reloads_itself(response) and not has_cancel_button(response)

    job = run_job(job)  # a worker that picks the job up now does nothing
    assert job.status == DumpJob.Status.CANCELLED
    assert Snapshot.objects.filter(reason="dump").count() == 1

    response = admin_client.post(cancel, follow=True)
    assert pages.messages(response) == ["Nothing to cancel: the job had already ended."]
    assert admin_client.post(url("dumpjob_cancel", job.pk + 1000)).status_code == 404


def test_cancel_from_the_list_of_dump_jobs(admin_client):
    admin_client.post(url(START), {"scope": "all"}, follow=True)
    job = DumpJob.objects.get()
    response = post_action(admin_client, DUMP_JOBS, "cancel_selected", [job], follow=True)
    assert pages.messages(response) == ["Cancelled 1 dump job; courses already queued stay queued."]
    assert DumpJob.objects.get().status == DumpJob.Status.CANCELLED
    response = admin_client.post(url(START), {"scope": "all"})  # a new dump can start now
    assert DumpJob.objects.filter(active=True).count() == 1


def test_changed_since_is_read_and_shown_in_utc_whatever_the_time_zone(admin_client, settings):
    """
    The form says "UTC". A CMS whose TIME_ZONE is not UTC (edx-platform's setting is the
    operator's) must still dump from the time typed, and say that time everywhere.
    """
    settings.TIME_ZONE = "America/New_York"
    response = admin_client.post(url(START), {"scope": "changed", "changed_since": "2026-01-02T03:04:05"},
                                 follow=True)
    job = DumpJob.objects.get()
    assert job.changed_since == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert pages.messages(response)[0].startswith(
        f"Dump job {job.pk} started: courses changed since 2026-01-02 03:04:05 UTC."
    )
    assert pages.readonly_field(response, "description") == "courses changed since 2026-01-02 03:04:05 UTC"
    # The next dump's form offers the time this one started, in UTC too.
    DumpJob.objects.filter(pk=job.pk).update(status=DumpJob.Status.DONE, active=None,
                                             started_at=datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC))
    form = pages.parse(admin_client.get(url(START), {"scope": "changed"}))
    assert form.find("input", name="changed_since").attrs["value"] == "2026-03-04T05:06:07"
