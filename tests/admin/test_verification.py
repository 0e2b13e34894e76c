"""
Verification from the admin: the course view's button (its own permission, audited)
starts a verification job that celery workers run (here `run_job`, as a worker would);
each course's last verdict and its time show in a column, and the list filters by them.
"""

import pytest
from django.contrib.admin.models import ADDITION, LogEntry

from clickhouse_outbox.dumps.run import run_job
from clickhouse_outbox.models import DumpJob, Verdict
from clickhouse_outbox.outbox.drain import drain_until_empty
from tests.admin import pages
from tests.admin.helpers import COURSES, url
from tests.reconcile.helpers import delete_rows

pytestmark = pytest.mark.django_db

VERIFY = "dumpjob_verify"


@pytest.fixture
def delivered(add_course, publish, server_clickhouse):
    """Two courses delivered to the real server; the second's rows then deleted there."""
    keys = [add_course("Kept", blocks=5), add_course("Lost", blocks=5)]
    for key in keys:
        publish(key)
    assert drain_until_empty(timeout=60)[0].ok
    for table in ("course_overviews", "course_blocks", "course_relationships"):
        delete_rows(server_clickhouse, table, f"course_key = '{keys[1]}'")
    return keys


def verify_button(response):
    form = pages.parse(response).find("form", id="verify-form")
    return None if form is None else (form.attrs["action"], form.find("input", name="producers").attrs["value"])


def test_the_button_starts_a_verification_that_workers_run_and_the_view_shows_each_verdict(
    admin_client, admin_user, delivered, django_capture_on_commit_callbacks
):
    kept, lost = delivered
    view = admin_client.get(url(COURSES))
    assert verify_button(view) == (url(VERIFY), "courses")
    assert pages.column(view, "verified") == ["-", "-"]

    with django_capture_on_commit_callbacks(execute=True) as sent:
        response = admin_client.post(url(VERIFY), {"producers": "courses"})
    job = DumpJob.objects.get()
    assert (job.action, job.producer_names, job.origin, job.requested_by, job.repair) == (
        DumpJob.Action.VERIFY, ["course_structure"], "admin", admin_user, False)
    assert response["Location"] == url("dumpjob_change", job.pk) and len(sent) == 1
    assert pages.messages(admin_client.get(response["Location"]))[0].startswith(
        f"Verification {job.pk} started: verify all courses.")
    (entry,) = LogEntry.objects.filter(user=admin_user)
    assert (entry.action_flag, entry.get_change_message()) == (ADDITION, "Started: verify all courses")

    job = run_job(job)

    assert job.status == DumpJob.Status.DONE
    assert "1 ok, 1 to repair" in pages.readonly_field(admin_client.get(url("dumpjob_change", job.pk)), "progress")
    rows = {row["course"]: row["verified"] for row in pages.rows(admin_client.get(url(COURSES)))}
    checked_at = Verdict.objects.get(subject=lost).checked_at
    assert rows[kept].startswith(f"OK, {checked_at:%Y-%m-%d %H:%M:%S} UTC")
    assert rows[lost].startswith("Not in ClickHouse (course_blocks: 0 of 7 rows; course_overviews: 0 of 1 row; "
                                 "course_relationships: 0 of ")
    assert f"), {checked_at:%Y-%m-%d %H:%M:%S} UTC" in rows[lost]


def test_the_list_filters_by_the_last_verdict(admin_client, delivered):
    kept, lost = delivered
    run_job(admin_client.post(url(VERIFY), {"producers": "courses"}) and DumpJob.objects.get())
    listed = {kind: pages.column(admin_client.get(url(COURSES), {"verified": kind}), "course")
              for kind in ("absent", "ok", "missing", "none")}
    assert listed == {"absent": [lost], "ok": [kept], "missing": [], "none": []}
    choices = pages.page_text(admin_client.get(url(COURSES)))
    assert "Not in ClickHouse" in choices and "Never verified" in choices


def test_with_repair_the_verification_dumps_again_what_differs(admin_client, delivered):
    kept, lost = delivered
    admin_client.post(url(VERIFY), {"producers": "courses", "repair": "1"})
    job = run_job(DumpJob.objects.get())

    repair = job.repair_job
    assert repair is not None and run_job(repair).status == DumpJob.Status.DONE
    assert [item.subject for item in repair.items.all()] == [lost]
    assert drain_until_empty(timeout=60)[0].ok
    rows = {row["course"]: row["verified"] for row in pages.rows(admin_client.get(url(COURSES)))}
    assert rows[lost].endswith("(an earlier snapshot)")  # the verdict was of the snapshot the repair replaced


def test_without_the_permission_no_button_and_a_forged_post_is_refused(staff_client, delivered):
    client = staff_client("start_dumpjob")
    assert verify_button(client.get(url(COURSES))) is None
    assert client.post(url(VERIFY), {"producers": "courses"}).status_code == 403
    assert not DumpJob.objects.exists()

    allowed = staff_client("start_verification", username="verifier")
    assert verify_button(allowed.get(url(COURSES))) == (url(VERIFY), "courses")
    assert allowed.get(url(VERIFY)).status_code == 405  # only a POST starts it
    assert allowed.post(url(VERIFY), {"producers": "courses"}).status_code == 302
    assert DumpJob.objects.get().requested_by == allowed.user


def repair_button(response):
    form = pages.parse(response).find("form", id="verify-repair-form")
    if form is None:
        return None
    return form.attrs["action"], {i.attrs["name"]: i.attrs["value"] for i in form.find_all("input") if i.attrs["type"] == "hidden"
                                  and i.attrs["name"] != "csrfmiddlewaretoken"}


def test_repair_is_offered_and_allowed_only_with_the_permission_to_start_dumps_too(staff_client, delivered):
    """A verification that repairs ends in a dump job: who may only verify may not start one that way."""
    verifier = staff_client("start_verification")
    assert repair_button(verifier.get(url(COURSES))) is None
    for value in ("1", "on", "yes"):
        assert verifier.post(url(VERIFY), {"producers": "courses", "repair": value}).status_code == 403
    assert not DumpJob.objects.exists()
    assert verifier.post(url(VERIFY), {"producers": "courses", "repair": ""}).status_code == 302  # no repair asked
    assert not DumpJob.objects.get().repair
    DumpJob.objects.update(active=False)

    both = staff_client("start_verification", "start_dumpjob", username="repairer")
    assert repair_button(both.get(url(COURSES))) == (url(VERIFY), {"producers": "courses", "repair": "1"})
    assert repair_button(both.get(url("subjectdelivery_changelist"))) == (url(VERIFY), {"producers": "others",
                                                                                         "repair": "1"})
    assert both.post(url(VERIFY), {"producers": "courses", "repair": "1"}).status_code == 302
    job = DumpJob.objects.get(active=True)
    assert (job.repair, job.requested_by, job.description) == (True, both.user, "verify all courses, then repair")


def test_the_learners_view_verifies_the_other_producers(admin_client):
    view = admin_client.get(url("subjectdelivery_changelist"))
    assert verify_button(view) == (url(VERIFY), "others")
    admin_client.post(url(VERIFY), {"producers": "others"})
    job = DumpJob.objects.get()
    assert "course_structure" not in job.producer_names
    assert {"course_enrollment", "user_profile", "external_id"} <= set(job.producer_names)
