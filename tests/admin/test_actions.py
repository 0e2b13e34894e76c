"""
The actions, run by a superuser from the lists: requeue courses (a dump job for many),
retry now (batches or courses), dismiss the failed snapshots of unknown courses. What they
change, what they say, and that the rows then reach the real ClickHouse test server.
"""

from datetime import timedelta

import pytest

from clickhouse_outbox import conf
from clickhouse_outbox.db import db_now
from clickhouse_outbox.dumps.run import run_job
from clickhouse_outbox.models import Batch, CourseDelivery, DumpJob, DumpJobItem, OutboxEntry, Snapshot
from clickhouse_outbox.outbox.drain import drain
from tests.admin import pages
from tests.admin.helpers import BATCHES, COURSES, SNAPSHOTS, fail_for_good, post_action, refused_drain, url
from tests.factories import MemorySource, PublishedCourseFactory, with_source

pytestmark = pytest.mark.django_db


def assert_no_message_starts_with_a_course_key(response):
    """The admin capitalises a message's first letter: one that began with a key would show a wrong key."""
    shown = pages.messages(response)
    assert shown, "no message was shown"
    assert not [text for text in shown if text.lower().startswith("course-v1:")], shown


def latest(course_key):
    return CourseDelivery.objects.filter(subject=course_key).latest("id")


def state_on_list(client, course_key):
    return pages.row_of(client.get(url(COURSES)), "course", course_key)["state"]


# -- requeue ---------------------------------------------------------------------------------


def test_requeue_takes_a_new_snapshot_of_each_selected_course(admin_client, add_course, publish):
    one, two = add_course("One"), add_course("Two")
    first_one, first_two = publish(one), publish(two)

    response = post_action(admin_client, COURSES, "requeue_subjects", [latest(one)], follow=True)
    again = Snapshot.objects.filter(subject=one).latest("id")
    assert (again.reason, again.status) == ("admin", Snapshot.Status.QUEUED)
    assert again.pk != first_one.pk and again.row_count == first_one.row_count
    assert pages.messages(response) == [
        f"1 course requeued ({again.row_count} rows queued); the next drain sends them."
    ]
    # The new snapshot replaces the old one's unsent rows.
    assert not first_one.entries.filter(status=OutboxEntry.Status.PENDING).exists()
    assert pages.row_of(response, "course", one)["taken"].endswith(", admin")

    response = post_action(admin_client, COURSES, "requeue_subjects", [latest(one), latest(two)], follow=True)
    queued = Snapshot.objects.filter(reason="admin").order_by("-id")[:2]
    assert sorted(s.subject for s in queued) == sorted([one, two])
    assert pages.messages(response) == [
        f"2 courses requeued ({sum(s.row_count for s in queued)} rows queued); the next drain sends them."
    ]
    assert Snapshot.objects.filter(subject=two).latest("id").pk != first_two.pk
    assert_no_message_starts_with_a_course_key(response)


def test_requeue_from_the_snapshot_list_too(admin_client, add_course, publish):
    key = add_course("FromSnapshots")
    snapshot = publish(key)
    response = post_action(admin_client, SNAPSHOTS, "requeue_subjects", [snapshot], follow=True)
    assert Snapshot.objects.filter(subject=key, reason="admin").count() == 1
    assert pages.messages(response)[0].startswith("1 course requeued (")


def test_requeue_reports_a_course_the_source_does_not_know_and_queues_the_others(admin_client, add_course, publish):
    known = add_course("Known")
    publish(known)
    gone = "course-v1:AdminX+Removed+2026"
    publish(gone)  # recorded as failed: the folder never had it
    response = post_action(admin_client, COURSES, "requeue_subjects", [latest(known), latest(gone)], follow=True)
    assert Snapshot.objects.filter(subject=known, reason="admin").count() == 1
    assert Snapshot.objects.filter(subject=gone).count() == 1  # nothing recorded for the unknown course
    shown = pages.messages(response)
    assert shown[0].startswith("1 course requeued (")
    assert shown[1].startswith(f"Could not requeue {gone}: ")
    assert_no_message_starts_with_a_course_key(response)


@pytest.fixture
def many_courses():
    """21 published courses (one more than a web request requeues itself), and the source that has them."""
    from clickhouse_outbox.producers.course_structure import take_course_snapshot

    source = MemorySource([PublishedCourseFactory(blocks=3) for _ in range(21)])
    for key in source.course_keys():
        take_course_snapshot(key, "published", source=source)
    return source


def test_requeue_of_more_than_twenty_courses_starts_a_dump_job(admin_client, admin_user, many_courses):
    snapshots_before = Snapshot.objects.count()
    response = post_action(admin_client, COURSES, "requeue_subjects", CourseDelivery.objects.all(), follow=True)
    assert Snapshot.objects.count() == snapshots_before  # nothing read in the web request
    job = DumpJob.objects.get()
    assert (job.scope, job.origin, job.requested_by, job.status) == (
        DumpJob.Scope.SELECTED, "admin", admin_user, DumpJob.Status.QUEUED
    )
    keys = sorted(str(key) for key in many_courses.course_keys())
    assert list(job.items.order_by("position").values_list("subject", flat=True)) == keys
    assert job.dispatched_at is not None  # sent to celery
    assert pages.messages(response) == [f"21 courses are requeued in the background by dump job {job.pk}."]
    link = pages.parse(response).find("ul", class_="messagelist").find("a")
    assert link.attrs["href"] == url("dumpjob_change", job.pk)

    job = run_job(job, producers=with_source(many_courses))  # what the celery worker does
    assert job.status == DumpJob.Status.DONE
    assert job.items.filter(status=DumpJobItem.Status.DONE).count() == 21
    assert sorted(Snapshot.objects.filter(reason="dump").values_list("subject", flat=True)) == keys


def test_requeue_of_many_courses_while_a_dump_runs_says_so_and_starts_nothing(admin_client, many_courses):
    admin_client.post(url("dumpjob_start"), {"scope": "all"}, follow=True)
    running = DumpJob.objects.get()
    response = post_action(admin_client, COURSES, "requeue_subjects", CourseDelivery.objects.all(), follow=True)
    assert list(DumpJob.objects.all()) == [running]
    (shown,) = pages.messages(response)
    assert shown.startswith(f"Dump job {running.pk} (all courses, queued) is under way, and two dumps cannot run")
    assert "error" in pages.parse(response).find("ul", class_="messagelist").find("li").classes


# -- retry now -------------------------------------------------------------------------------


@pytest.fixture
def failed_and_waiting(add_course, publish, server_clickhouse, settings):
    """A course whose three batches failed for good, then one whose first batch waits out the refusal."""
    failed = add_course("Failed")
    publish(failed)
    fail_for_good(settings)
    waiting = add_course("Waiting")
    publish(waiting)
    refused_drain(settings)
    # Its next attempt minutes away, as after a few failed attempts: "due now" is then a change.
    Batch.objects.filter(status=Batch.Status.RETRY).update(next_attempt_at=db_now() + timedelta(minutes=10))
    return failed, waiting


def test_retry_now_makes_failed_and_waiting_batches_due_and_the_next_drain_delivers(
    admin_client, failed_and_waiting, settings
):
    failed, waiting = failed_and_waiting
    chosen = list(Batch.objects.filter(status__in=[Batch.Status.FAILED, Batch.Status.RETRY]).order_by("id"))
    assert [b.status for b in chosen] == [Batch.Status.FAILED] * 3 + [Batch.Status.RETRY]
    assert chosen[-1].server_error and chosen[-1].next_attempt_at > db_now()

    response = post_action(admin_client, BATCHES, "retry_selected_batches", chosen, follow=True)
    assert pages.messages(response) == ["4 batches will be sent at the next drain, with the current settings."]
    now = db_now()
    for before in chosen:
        batch = Batch.objects.get(pk=before.pk)
        assert batch.status == Batch.Status.RETRY and batch.next_attempt_at <= now
        assert batch.attempts == before.attempts == 1  # the history is kept...
        assert batch.attempts_left == conf.max_attempts() == 12  # ... and a fresh set of attempts given
        assert (batch.lease_owner, batch.lease_expires_at) == (None, None)

    result = drain()  # the password is right again
    assert result.ok and result.batches_sent == 6
    for key in (failed, waiting):
        assert state_on_list(admin_client, key).startswith("Delivered at ")
    assert set(Batch.objects.filter(pk__in=[b.pk for b in chosen]).values_list("attempts", flat=True)) == {2}


def test_retrying_a_failed_batch_ends_the_wait_after_a_server_failure_too(admin_client, failed_and_waiting):
    """Otherwise the retried batch would wait behind the one waiting out the refusal."""
    first = Batch.objects.filter(status=Batch.Status.FAILED).order_by("id").first()
    waiting = Batch.objects.get(status=Batch.Status.RETRY)
    response = post_action(admin_client, BATCHES, "retry_selected_batches", [first], follow=True)
    assert pages.messages(response) == [
        "1 batch will be sent at the next drain, with the current settings. "
        "The wait after a failure of the server was ended too."
    ]
    now = db_now()
    assert Batch.objects.get(pk=waiting.pk).next_attempt_at <= now
    assert Batch.objects.filter(status=Batch.Status.FAILED).count() == 2
    assert drain().batches_sent == 4  # the two due batches, then the waiting course's pending rows


def test_retry_now_on_sent_batches_does_nothing_and_says_so(admin_client, add_course, publish, server_clickhouse):
    publish(add_course("Sent"))
    drain()
    sent = list(Batch.objects.all())
    response = post_action(admin_client, BATCHES, "retry_selected_batches", sent, follow=True)
    assert pages.messages(response) == ["Nothing to retry: no failed or waiting batch was selected."]
    assert set(Batch.objects.values_list("status", flat=True)) == {Batch.Status.SENT}


def test_retry_now_from_the_course_view(admin_client, add_course, publish, server_clickhouse, settings):
    failed = add_course("Failed")
    publish(failed)
    other = add_course("Other")
    publish(other)
    fail_for_good(settings)  # one batch per table, each with both courses' rows
    also_failed = add_course("AlsoFailed")
    publish(also_failed)
    fail_for_good(settings)
    theirs = set(Batch.objects.filter(entries__snapshot__subject=failed).values_list("pk", flat=True))
    assert len(theirs) == 3

    response = post_action(admin_client, COURSES, "retry_subjects", [latest(failed)],
                           query="?state=failed&q=AdminX%2BFailed")
    # Back to the list, still searched, without the "failed" filter the course just left.
    assert response.status_code == 302
    assert response["Location"] == url(COURSES) + "?q=AdminX%2BFailed"
    page = admin_client.get(response["Location"])
    assert pages.messages(page) == ["3 batches will be sent at the next drain, with the current settings."]
    assert pages.row_of(page, "course", failed)["state"].startswith("Waiting to retry (next attempt ")
    assert set(Batch.objects.filter(status=Batch.Status.RETRY).values_list("pk", flat=True)) == theirs
    assert Batch.objects.filter(status=Batch.Status.FAILED, entries__snapshot__subject=also_failed).count() == 3

    assert drain().batches_sent == 3
    assert state_on_list(admin_client, failed).startswith("Delivered at ")
    assert state_on_list(admin_client, other).startswith("Delivered at ")  # its rows were in the same batches
    assert state_on_list(admin_client, also_failed) == "Failed"


def test_retry_now_of_a_pending_course_says_nothing_was_retried(admin_client, add_course, publish):
    key = add_course("Pending")
    publish(key)
    response = post_action(admin_client, COURSES, "retry_subjects", [latest(key)], follow=True)
    assert pages.messages(response) == ["Nothing to retry: no failed or waiting batch was selected."]
    assert "warning" in pages.parse(response).find("ul", class_="messagelist").find("li").classes


# -- dismiss ---------------------------------------------------------------------------------


def test_dismiss_drops_unknown_courses_and_keeps_known_ones_with_a_warning(
    admin_client, add_course, publish, break_course
):
    gone = "course-v1:AdminX+Gone+2026"
    publish(gone)
    early = "course-v1:AdminX+Early+2026"
    publish(early)  # published before its export was in the folder...
    assert add_course("Early") == early  # ... which it is now
    broken = add_course("Broken")
    break_course(broken)
    publish(broken)
    assert set(Snapshot.objects.values_list("status", flat=True)) == {Snapshot.Status.FAILED}

    selected = [latest(gone), latest(early), latest(broken)]
    response = post_action(admin_client, COURSES, "dismiss_snapshots", selected, follow=True)
    assert Snapshot.objects.get(subject=gone).status == Snapshot.Status.DISMISSED
    assert Snapshot.objects.get(subject=early).status == Snapshot.Status.FAILED
    assert Snapshot.objects.get(subject=broken).status == Snapshot.Status.FAILED
    shown = pages.messages(response)
    assert shown[0] == (
        "Dismissed 1 failed snapshot of unknown courses; outbox_requeue --failed no longer takes them again."
    )
    assert len(shown) == 3
    kept = {key: text for text in shown[1:] for key in (early, broken)
            if text.startswith(f"Kept the failed snapshot of {key}: ")}
    assert kept[early] == f"Kept the failed snapshot of {early}: the course source knows it: take a new snapshot instead."
    assert kept[broken].startswith(
        f"Kept the failed snapshot of {broken}: the course source knows it but cannot read it ("
    )
    assert "malformed XML" in kept[broken]
    assert_no_message_starts_with_a_course_key(response)
    # The dismissed course leaves the list; it is found under its own filter.
    assert gone not in pages.column(response, "course")
    assert pages.column(admin_client.get(url(COURSES), {"state": "dismissed"}), "course") == [gone]


def test_dismiss_of_two_unknown_courses_and_of_a_course_that_did_not_fail(admin_client, add_course, publish):
    gone = ["course-v1:AdminX+GoneA+2026", "course-v1:AdminX+GoneB+2026"]
    for key in gone:
        publish(key)
    response = post_action(admin_client, SNAPSHOTS, "dismiss_snapshots", Snapshot.objects.all(), follow=True)
    assert pages.messages(response)[0].startswith("Dismissed 2 failed snapshots of unknown courses;")
    assert set(Snapshot.objects.values_list("status", flat=True)) == {Snapshot.Status.DISMISSED}

    fine = add_course("Fine")
    publish(fine)
    response = post_action(admin_client, COURSES, "dismiss_snapshots", [latest(fine)], follow=True)
    assert pages.messages(response) == ["Only failed snapshots can be dismissed."]
    assert latest(fine).status == Snapshot.Status.QUEUED
