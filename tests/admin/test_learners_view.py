"""
The admin for every producer: the "learners and tags" view (one row per enrollment, user
profile, external id, tag... and per retirement, filtered by producer and state), its
actions, the summary's deletes, the dump form's producers, and no learner's personal data
on any page.
"""

import pytest

from clickhouse_outbox.models import Batch, DumpJob, Snapshot
from clickhouse_outbox.outbox.drain import drain
from clickhouse_outbox.receivers import user_retired
from outbox_project.platform.models import UserProfile
from tests.admin import pages
from tests.admin.helpers import BATCHES, ENTRIES, SNAPSHOTS, post_action, refused_drain, url
from tests.learners import COURSE, enroll, give_external_id, make_learner, tag_object, taxonomy_with_tags

pytestmark = pytest.mark.django_db

LEARNERS = "subjectdelivery_changelist"
PII = ("Ada Lovelace", "ada@example.com", "Grace Hopper", "grace@example.com")


@pytest.fixture
def outbox(server_clickhouse, settings):
    """Ada enrolled and delivered, then retired (deletes waiting: the server refuses); Grace pending; a tag."""
    ada, grace = make_learner(), make_learner("grace", "Grace Hopper")
    give_external_id(ada)
    enroll(ada)
    _, (science,) = taxonomy_with_tags(values=("Science",))
    tag_object(COURSE, science)
    assert drain().ok
    user_retired(sender=None, user=ada)
    refused_drain(settings)  # the first delete waits to retry
    enroll(grace)
    return {"ada": ada, "grace": grace, "tag": science}


def test_every_producers_subjects_are_listed_with_their_state(admin_client, outbox):
    response = admin_client.get(url(LEARNERS))
    assert response.status_code == 200
    listed = {(row["producer"], row["subject_name"]): row["state"] for row in pages.rows(response)}
    ada, grace = outbox["ada"], outbox["grace"]
    ada_profile = UserProfile.objects.get(user=ada).pk
    assert listed[("user_retirement", str(ada.pk))].startswith("Waiting to retry")
    assert listed[("user_profile", str(ada_profile))] == "Deleted"
    assert listed[("tag", str(outbox["tag"].pk))].startswith("Delivered at")
    assert listed[("course_enrollment", str(grace.courseenrollment_set.get().pk))] == "Pending"
    assert "course_structure" not in {producer for producer, _ in listed}  # courses have their own view
    text = pages.parse(response).text
    assert "Deletes pending, being sent, waiting to retry, failed" in text
    assert pages.by_id(response, "summary-deletes").text.startswith("1, 0, 1, 0")

    only_tags = admin_client.get(url(LEARNERS) + "?producer=tag")
    assert {row["producer"] for row in pages.rows(only_tags)} == {"tag"}
    waiting = admin_client.get(url(LEARNERS) + "?state=waiting")
    assert [row["producer"] for row in pages.rows(waiting)] == ["user_retirement"]


def test_no_page_shows_a_learners_personal_data(admin_client, outbox):
    batch = Batch.objects.filter(table="course_enrollment").first()
    snapshot = Snapshot.objects.filter(producer="course_enrollment").first()
    for page in (url(LEARNERS), url(BATCHES), url(ENTRIES), url(SNAPSHOTS), url("batch_change", batch.pk),
                 url("snapshot_change", snapshot.pk), url("subjectdelivery_change", snapshot.pk)):
        response = admin_client.get(page)
        assert response.status_code == 200, page
        content = response.content.decode()
        for word in PII:
            assert word not in content, (page, word)


def test_requeue_from_the_learners_view_takes_new_snapshots_and_a_retirement_is_not_taken_again(admin_client, outbox):
    grace_profile = UserProfile.objects.get(user=outbox["grace"])
    latest = Snapshot.objects.filter(producer="user_profile", subject=str(grace_profile.pk)).latest("id")
    retirement = Snapshot.objects.get(producer="user_retirement")
    response = post_action(admin_client, LEARNERS, "requeue_subjects", [latest, retirement], follow=True)
    assert pages.messages(response) == ["1 user profile requeued (1 row queued); the next drain sends them."]
    assert Snapshot.objects.filter(producer="user_profile", subject=str(grace_profile.pk), reason="admin").exists()
    assert Snapshot.objects.filter(producer="user_retirement").count() == 1

    response = post_action(admin_client, LEARNERS, "requeue_subjects", [retirement], follow=True)
    assert pages.messages(response)[0].startswith("Nothing selected can be requeued")


def test_retry_now_sends_the_waiting_delete(admin_client, outbox):
    retirement = Snapshot.objects.get(producer="user_retirement")
    response = post_action(admin_client, LEARNERS, "retry_subjects", [retirement], follow=True)
    assert pages.messages(response)[0].startswith("1 batch will be sent at the next drain")
    assert drain().deletes_sent == 2


def test_the_dump_form_starts_a_dump_of_the_chosen_producers(admin_client, outbox):
    form = admin_client.get(url("dumpjob_start") + "?producers=other")
    checked = {box.attrs["value"] for box in pages.parse(form).find_all("input", name="producers")
               if "checked" in box.attrs}
    assert "course_structure" not in checked and {"course_enrollment", "user_profile", "tag"} <= checked
    response = admin_client.post(url("dumpjob_start"), {"producers": ["course_enrollment", "tag"], "scope": "all"},
                                 follow=True)
    job = DumpJob.objects.get()
    assert (job.producer_names, job.description) == (["course_enrollment", "tag"], "all enrollments and tags")
    assert pages.messages(response)[0].startswith(f"Dump job {job.pk} started: all enrollments and tags.")

    refused = admin_client.post(url("dumpjob_start"), {"producers": ["user_profile"], "scope": "changed",
                                                       "changed_since": "2026-01-01T00:00:00"})
    assert "Only courses can be dumped by what changed since a time" in refused.content.decode()
