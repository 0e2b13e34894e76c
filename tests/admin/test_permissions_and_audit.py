"""
Who may do what: staff with the view permissions see everything and can do nothing (no
action offered, no dump button, and a forged POST changes nothing); each action permission
gives exactly its action. And what every action leaves in the admin's history.
"""

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import reverse

from clickhouse_outbox.dumps.jobs import cancel_job, start_job
from clickhouse_outbox.models import Batch, CourseDelivery, DumpJob, Snapshot
from clickhouse_outbox.producers.course_structure import take_course_snapshot
from tests.admin import pages
from tests.admin.helpers import (
    BATCHES, COURSES, DUMP_JOBS, ENTRIES, SNAPSHOTS, fail_for_good, post_action, url,
)
from tests.factories import MemorySource, PublishedCourseFactory

pytestmark = pytest.mark.django_db

DUMP_BUTTONS = ("dump-all", "dump-changed", "verify-all", "verify-repair", "start-dump", "cancel-dump")


@pytest.fixture
def outbox(add_course, publish, server_clickhouse, settings):
    """Something for every action to change: a failed course, an unknown one, a pending one, a running dump."""
    failed = add_course("Failed")
    publish(failed)
    fail_for_good(settings)
    gone = "course-v1:AdminX+Gone+2026"
    publish(gone)
    pending = add_course("Pending")
    publish(pending)
    job = start_job(DumpJob.Scope.ALL, origin="outbox_requeue")
    return {"failed": failed, "gone": gone, "pending": pending, "job": job}


def everything():
    """What any action could change."""
    return (
        list(Snapshot.objects.order_by("id").values_list("id", "status", "reason")),
        list(Batch.objects.order_by("id").values_list("id", "status", "next_attempt_at", "attempts_at_requeue")),
        list(DumpJob.objects.order_by("id").values_list("id", "status", "active")),
        LogEntry.objects.count(),
    )


def buttons(response):
    html = pages.parse(response)
    return [name for name in DUMP_BUTTONS if html.find(id=name) is not None]


def pages_and_their_offer(client, job):
    """{page: (actions offered, dump buttons shown)} for every page where staff could act."""
    seen = {}
    for name in (COURSES, SNAPSHOTS, BATCHES, ENTRIES, DUMP_JOBS):
        response = client.get(url(name))
        assert response.status_code == 200, name
        seen[name] = (pages.actions(response), buttons(response))
    response = client.get(url("dumpjob_change", job.pk))
    assert response.status_code == 200
    seen["job page"] = (pages.actions(response), buttons(response))
    return seen


def forge_every_action(client, outbox):
    """Post every action and dump form the way the admin's own pages would, whatever the user was offered."""
    courses = list(CourseDelivery.objects.all())
    snapshots = list(Snapshot.objects.all())
    batches = list(Batch.objects.all())
    jobs = list(DumpJob.objects.all())
    answers = {
        "requeue_subjects": post_action(client, COURSES, "requeue_subjects", courses),
        "retry_subjects": post_action(client, COURSES, "retry_subjects", courses),
        "dismiss_snapshots": post_action(client, COURSES, "dismiss_snapshots", courses),
        "requeue_snapshots": post_action(client, SNAPSHOTS, "requeue_subjects", snapshots),
        "dismiss_on_snapshots": post_action(client, SNAPSHOTS, "dismiss_snapshots", snapshots),
        "retry_selected_batches": post_action(client, BATCHES, "retry_selected_batches", batches),
        "cancel_selected": post_action(client, DUMP_JOBS, "cancel_selected", jobs),
        "start": client.post(url("dumpjob_start"), {"scope": "all"}),
        "cancel": client.post(url("dumpjob_cancel", outbox["job"].pk)),
        "verify": client.post(url("dumpjob_verify"), {"producers": "courses"}),
    }
    return {name: response.status_code for name, response in answers.items()}


def test_view_only_staff_see_every_page_but_no_action_and_no_dump_button(staff_client, outbox):
    client = staff_client()
    seen = pages_and_their_offer(client, outbox["job"])
    assert seen == {name: ([], []) for name in seen}
    assert client.get(url("dumpjob_start")).status_code == 403
    assert outbox["failed"] in pages.column(client.get(url(COURSES)), "course")


def test_a_forged_post_from_view_only_staff_changes_nothing(staff_client, outbox):
    client = staff_client()
    before = everything()
    statuses = forge_every_action(client, outbox)
    assert everything() == before
    assert not LogEntry.objects.filter(user=client.user).exists()
    # The lists answer as if no action had been posted; the dump pages refuse.
    assert statuses == {
        "requeue_subjects": 200, "retry_subjects": 200, "dismiss_snapshots": 200, "requeue_snapshots": 200,
        "dismiss_on_snapshots": 200, "retry_selected_batches": 200, "cancel_selected": 200,
        "start": 403, "cancel": 403, "verify": 403,
    }


def test_the_superuser_is_offered_every_action_and_button(admin_client, outbox):
    seen = pages_and_their_offer(admin_client, outbox["job"])
    assert seen == {
        COURSES: (["requeue_subjects", "retry_subjects", "dismiss_snapshots"],
                  ["dump-all", "dump-changed", "verify-all", "verify-repair"]),
        SNAPSHOTS: (["requeue_subjects", "dismiss_snapshots"], []),
        BATCHES: (["retry_selected_batches"], []),
        ENTRIES: ([], []),
        DUMP_JOBS: (["cancel_selected"], ["start-dump"]),
        "job page": ([], ["cancel-dump"]),
    }


ONE_PERMISSION = {
    "requeue_course": {COURSES: (["requeue_subjects"], []), SNAPSHOTS: (["requeue_subjects"], [])},
    "retry_batch": {COURSES: (["retry_subjects"], []), BATCHES: (["retry_selected_batches"], [])},
    "dismiss_snapshot": {COURSES: (["dismiss_snapshots"], []), SNAPSHOTS: (["dismiss_snapshots"], [])},
    "start_dumpjob": {COURSES: ([], ["dump-all", "dump-changed"]), DUMP_JOBS: ([], ["start-dump"])},
    "cancel_dumpjob": {DUMP_JOBS: (["cancel_selected"], []), "job page": ([], ["cancel-dump"])},
    "start_verification": {COURSES: ([], ["verify-all"])},
}
#: The permissions that start a job: refused (with the reason) while another job runs.
STARTS_A_JOB = {"start_dumpjob": "dump", "start_verification": "verify"}


@pytest.mark.parametrize("codename", sorted(ONE_PERMISSION))
def test_one_action_permission_gives_exactly_that_action(staff_client, outbox, codename):
    client = staff_client(codename)
    seen = pages_and_their_offer(client, outbox["job"])
    expected = {name: ([], []) for name in seen} | ONE_PERMISSION[codename]
    assert seen == expected
    assert client.get(url("dumpjob_start")).status_code == (200 if codename == "start_dumpjob" else 403)

    # Forged, every action and dump form does only what the permission allows.
    gone = Snapshot.objects.get(subject=outbox["gone"])
    statuses = forge_every_action(client, outbox)
    requeued = Snapshot.objects.filter(reason="admin").exists()
    retried = Batch.objects.filter(status=Batch.Status.RETRY).exists()
    gone.refresh_from_db()
    dismissed = gone.status == Snapshot.Status.DISMISSED
    outbox["job"].refresh_from_db()
    cancelled = outbox["job"].status == DumpJob.Status.CANCELLED
    started = DumpJob.objects.filter(origin="admin").exists()
    done = {name for name, happened in [("requeue_course", requeued), ("retry_batch", retried),
                                        ("dismiss_snapshot", dismissed), ("cancel_dumpjob", cancelled),
                                        ("start_dumpjob", started)] if happened}
    if codename in STARTS_A_JOB:
        # The job of outbox_requeue is still running: the start is refused with the reason, nothing created...
        assert not started and DumpJob.objects.count() == 1
        assert done == set()
        # ... and once it has ended, the start creates a job.
        cancel_job(outbox["job"])
        if codename == "start_dumpjob":
            assert client.post(url("dumpjob_start"), {"scope": "all"}).status_code == 302
        else:
            assert client.post(url("dumpjob_verify"), {"producers": "courses"}).status_code == 302
        new = DumpJob.objects.get(active=True)
        assert (new.requested_by, new.action) == (client.user, STARTS_A_JOB[codename])
    else:
        assert done == {codename}
    for name, form in (("start_dumpjob", "start"), ("start_verification", "verify")):
        assert statuses[form] == (302 if codename == name else 403), form
    assert statuses["cancel"] == (302 if codename == "cancel_dumpjob" else 403)


def test_viewing_snapshots_is_enough_to_see_the_course_view(django_user_model, client):
    user = django_user_model.objects.create_user("reader", is_staff=True)
    user.user_permissions.set([Permission.objects.get(content_type__app_label="clickhouse_outbox",
                                                      codename="view_snapshot")])
    client.force_login(user)
    assert client.get(url(COURSES)).status_code == 200
    assert client.get(url(BATCHES)).status_code == 403
    app_index = pages.parse(client.get(reverse("admin:app_list", args=["clickhouse_outbox"])))
    assert [cell.text for cell in app_index.find_all("th", scope="row")] == ["Courses", "Learners and tags", "Snapshots"]


# -- the admin's history ------------------------------------------------------------------


def history(user, model):
    """(object id, action flag, what the entry says) of `user`'s history entries on `model`, in order."""
    kind = ContentType.objects.get_for_model(model, for_concrete_model=False)
    return [
        (entry.object_id, entry.action_flag, entry.get_change_message())
        for entry in LogEntry.objects.filter(user=user, content_type=kind).order_by("id")
    ]


def course_history(user):
    """{course key: [what the entries on its snapshots say]} of `user`'s entries in the course view."""
    said = {}
    kind = ContentType.objects.get_for_model(CourseDelivery, for_concrete_model=False)
    for entry in LogEntry.objects.filter(user=user, content_type=kind).order_by("id"):
        assert entry.action_flag == CHANGE
        key = entry.object_repr.split()[1]  # "course_structure <course key> (<status>, <dump id>)"
        said.setdefault(key, []).append(entry.get_change_message())
    return said


def test_requeue_is_recorded_on_each_course_with_the_count(admin_client, admin_user, add_course, publish):
    keys = [add_course("One"), add_course("Two")]
    post_action(admin_client, COURSES, "requeue_subjects", [publish(key) for key in keys])
    assert course_history(admin_user) == {key: ["Requeued: a new snapshot was taken (2 in this action)"] for key in keys}


def test_the_history_of_a_requeued_course_shows_the_requeue(admin_client, admin_user, add_course, publish):
    """
    A course's page is its latest snapshot: after a requeue, that is the new one. Its
    history, and the link of "Recent actions" on the admin's home page, must lead to the
    record of the requeue, not to "Course with ID ... doesn't exist".
    """
    key = add_course("One")
    post_action(admin_client, COURSES, "requeue_subjects", [publish(key)])
    course = CourseDelivery.objects.filter(subject=key).latest("id")
    assert course.reason == "admin"
    page = admin_client.get(url("coursedelivery_history", course.pk))
    assert page.status_code == 200
    assert "Requeued: a new snapshot was taken" in pages.page_text(page)
    (entry,) = LogEntry.objects.filter(user=admin_user)
    assert admin_client.get(entry.get_admin_url()).status_code == 200


def test_a_course_that_could_not_be_requeued_is_not_recorded_as_requeued(admin_client, admin_user, add_course,
                                                                          publish):
    """
    The history must say what happened: the course the source does not know got no new
    snapshot (the action's message says so), so its history must not say it did.
    """
    known = add_course("Known")
    gone = "course-v1:AdminX+Removed+2026"
    response = post_action(admin_client, COURSES, "requeue_subjects", [publish(known), publish(gone)], follow=True)
    assert pages.messages(response)[1].startswith(f"Could not requeue {gone}: ")
    assert Snapshot.objects.filter(subject=gone).count() == 1
    said = course_history(admin_user)
    assert said[known][0].startswith("Requeued: a new snapshot was taken (")
    assert not [text for text in said.get(gone, []) if "a new snapshot was taken" in text], said[gone]


def test_retry_now_is_recorded_on_each_course_or_batch(admin_client, admin_user, outbox):
    failed = CourseDelivery.objects.get(subject=outbox["failed"])
    post_action(admin_client, COURSES, "retry_subjects", [failed])
    assert history(admin_user, CourseDelivery) == [
        (str(failed.pk), CHANGE, "Retry now: 3 batches made due (1 in this action)")
    ]
    Batch.objects.update(status=Batch.Status.FAILED)
    chosen = list(Batch.objects.order_by("id")[:2])
    post_action(admin_client, BATCHES, "retry_selected_batches", chosen)
    assert sorted(history(admin_user, Batch), key=lambda entry: int(entry[0])) == [
        (str(batch.pk), CHANGE, "Retry now: 2 batches made due (2 in this action)") for batch in chosen
    ]


def test_dismiss_is_recorded_on_the_dismissed_courses_only(admin_client, admin_user, outbox):
    selected = list(CourseDelivery.objects.all())
    post_action(admin_client, COURSES, "dismiss_snapshots", selected)
    gone = Snapshot.objects.get(subject=outbox["gone"])
    assert history(admin_user, CourseDelivery) == [
        (str(gone.pk), CHANGE, "Dismissed: the course source does not know the course (1 in this action)")
    ]


def test_starting_and_cancelling_a_dump_are_recorded(admin_client, admin_user):
    admin_client.post(url("dumpjob_start"), {"scope": "changed", "changed_since": "2026-01-02T03:04:05"})
    job = DumpJob.objects.get()
    assert history(admin_user, DumpJob) == [
        (str(job.pk), ADDITION, "Started a dump of courses changed since 2026-01-02 03:04:05 UTC")
    ]
    admin_client.post(url("dumpjob_cancel", job.pk))
    assert history(admin_user, DumpJob)[1:] == [(str(job.pk), CHANGE, "Cancelled (1 in this action)")]

    admin_client.post(url("dumpjob_start"), {"scope": "all"})
    second = DumpJob.objects.latest("id")
    post_action(admin_client, DUMP_JOBS, "cancel_selected", [second, job])  # the first had ended already
    assert history(admin_user, DumpJob)[2:] == [
        (str(second.pk), ADDITION, "Started a dump of all courses"),
        (str(second.pk), CHANGE, "Cancelled (1 in this action)"),
    ]
    page = pages.page_text(admin_client.get(url("dumpjob_history", second.pk)))
    assert "Started a dump of all courses" in page and "Cancelled (1 in this action)" in page


def test_a_requeue_handed_to_a_dump_job_is_recorded_on_the_job_and_each_course(admin_client, admin_user):
    source = MemorySource([PublishedCourseFactory(blocks=3) for _ in range(21)])
    for key in source.course_keys():
        take_course_snapshot(key, "published", source=source)
    selected = list(CourseDelivery.objects.all())
    post_action(admin_client, COURSES, "requeue_subjects", selected)
    job = DumpJob.objects.get()
    assert history(admin_user, DumpJob) == [(str(job.pk), ADDITION, "Started a dump of 21 selected courses")]
    assert course_history(admin_user) == {
        s.subject: [f"Requeued by dump job {job.pk} (21 in this action)"] for s in selected
    }


def test_a_post_from_another_site_is_refused(admin_user, outbox):
    """A page elsewhere that makes a logged-in superuser's browser post (no CSRF token) changes nothing."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    before = everything()
    assert set(forge_every_action(browser, outbox).values()) == {403}
    assert everything() == before
