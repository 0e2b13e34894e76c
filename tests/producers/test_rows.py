"""
Each producer, driven the way the platform drives it (a model saved, an openedx-events
enrollment event): a change that commits queues its row, in the change's transaction and
shaped column for column as platform-plugin-aspects 2.1.0's serializers give it; a change
that rolls back queues nothing; `dump_id` and `time_last_dumped` are fixed when the row is
written. Run on SQLite, MariaDB and PostgreSQL by `make test`.
"""

import json
import uuid
from datetime import datetime, timezone

import pytest
from django.db import connection, transaction

from clickhouse_outbox.models import OutboxEntry, Snapshot
from clickhouse_outbox.outbox.drain import drain
from clickhouse_outbox.outbox.requested import TAGS_CHANGED
from outbox_project.platform.models import UserProfile
from tests.learners import (
    COURSE,
    change_enrollment,
    enroll,
    give_external_id,
    make_learner,
    queued_rows,
    tag_object,
    tagging_model,
    taxonomy_with_tags,
)

pytestmark = pytest.mark.django_db

TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f+00:00"  # time_last_dumped, as the peers write it


def snapshot_of(producer, subject):
    return Snapshot.objects.filter(producer=producer, subject=str(subject)).latest("id")


def fixed_fields(row, producer, subject):
    """A row's dump_id and time_last_dumped are its snapshot's: the values every resend carries."""
    snapshot = snapshot_of(producer, subject)
    assert row.pop("dump_id") == str(snapshot.dump_id)
    dumped = row.pop("time_last_dumped")
    assert dumped == snapshot.time_last_dumped
    datetime.strptime(dumped, TIME_FORMAT)
    return row


def test_an_enrollment_queues_its_row_as_the_peer_writes_it():
    user = make_learner()
    enrollment = enroll(user, mode="verified")

    (row,) = queued_rows("course_enrollment")  # CHANGED then CREATED: the second supersedes the first, unsent
    assert fixed_fields(row, "course_enrollment", enrollment.pk) == {
        "id": enrollment.pk,
        "course_key": str(COURSE),
        "created": enrollment.created.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
        "is_active": True,
        "mode": "verified",
        "username": "ada",
        "user_id": user.pk,
    }
    snapshot = snapshot_of("course_enrollment", enrollment.pk)
    assert (snapshot.user_id, snapshot.reason, snapshot.row_count) == (user.pk, "enrollment", 1)


def test_a_row_changed_again_in_the_same_transaction_is_queued_once_with_its_last_values(clickhouse):
    enrollment = enroll(make_learner())
    statuses = lambda: list(Snapshot.objects.filter(producer="course_enrollment").order_by("id")  # noqa: E731
                            .values_list("status", flat=True))
    assert statuses() == [Snapshot.Status.QUEUED]  # saved, CHANGED, then CREATED: one row queued
    first = snapshot_of("course_enrollment", enrollment.pk)

    change_enrollment(enrollment, mode="verified")  # the same (test's) transaction: its entry is rewritten
    assert statuses() == [Snapshot.Status.QUEUED]
    (row,) = queued_rows("course_enrollment")
    assert (row["mode"], row["dump_id"], row["time_last_dumped"]) == ("verified", str(first.dump_id),
                                                                      first.time_last_dumped)

    assert drain().ok
    change_enrollment(enrollment)  # the same rows, but those were claimed and sent: "send it again" is written
    assert len(statuses()) == 2
    assert [row["mode"] for row in queued_rows("course_enrollment", [OutboxEntry.Status.PENDING])] == ["verified"]


@pytest.mark.django_db(transaction=True)
def test_a_row_queued_by_several_transactions_is_sent_once_the_older_superseded_at_the_claim(clickhouse):
    with transaction.atomic():  # a request (ATOMIC_REQUESTS)
        enrollment = enroll(make_learner())
    with transaction.atomic():  # another one
        change_enrollment(enrollment, mode="verified")
    older, newer = Snapshot.objects.filter(producer="course_enrollment").order_by("id")
    assert (older.status, newer.status) == (Snapshot.Status.QUEUED, Snapshot.Status.QUEUED)

    assert drain().ok
    older.refresh_from_db()
    assert older.status == Snapshot.Status.SUPERSEDED
    assert OutboxEntry.objects.get(snapshot=older).status == OutboxEntry.Status.SUPERSEDED
    rows = clickhouse.query(f"SELECT mode, dump_id FROM `{clickhouse.database}`.course_enrollment")
    assert [(row["mode"], row["dump_id"]) for row in rows] == [("verified", str(newer.dump_id))]


def test_an_unenrollment_queues_the_inactive_row_next_to_the_sent_active_one(clickhouse):
    enrollment = enroll(make_learner())
    assert drain().ok
    change_enrollment(enrollment, is_active=False)
    assert [row["is_active"] for row in queued_rows("course_enrollment", [OutboxEntry.Status.PENDING])] == [False]
    assert drain().ok
    rows = clickhouse.query(f"SELECT is_active FROM `{clickhouse.database}`.course_enrollment "
                            "ORDER BY time_last_dumped")
    assert [row["is_active"] in (False, 0) for row in rows] == [False, True]


def test_a_profile_queues_its_row_with_the_users_username_and_email():
    user = make_learner(year_of_birth=1815, gender="f", level_of_education="p", country="GB", city=None,
                        bio="Poetical science", phone_number="+4420", meta=json.dumps({"a": 1}))
    profile = UserProfile.objects.get(user=user)
    profile.profile_image_uploaded_at = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=timezone.utc)
    profile.save()

    (row,) = queued_rows("user_profile")
    assert fixed_fields(row, "user_profile", profile.pk) == {
        "id": profile.pk, "user_id": user.pk, "name": "Ada Lovelace", "username": "ada",
        "email": "ada@example.com", "meta": '{"a": 1}', "courseware": "course.xml", "language": "", "location": "",
        # Every other column is a String: an unset value is "" (the peer's CSV leaves it empty), a year its text.
        "year_of_birth": "1815", "gender": "f", "level_of_education": "p", "mailing_address": "", "city": "",
        "country": "GB", "state": "", "goals": "", "bio": "Poetical science",
        "profile_image_uploaded_at": "2026-01-02T03:04:05.600000Z", "phone_number": "+4420",
    }
    assert snapshot_of("user_profile", profile.pk).user_id == user.pk


def test_a_new_email_or_username_queues_the_profile_and_external_ids_again_but_a_login_does_not(clickhouse):
    user = make_learner()
    give_external_id(user)
    before = Snapshot.objects.count()
    user.last_login = datetime.now(timezone.utc)
    user.save(update_fields=["last_login"])
    assert Snapshot.objects.count() == before

    snapshots = lambda producer: Snapshot.objects.filter(producer=producer).count()  # noqa: E731
    external_ids = snapshots("external_id")
    user.email = "countess@example.com"
    user.save()
    assert queued_rows("user_profile")[-1]["email"] == "countess@example.com"
    assert [row["username"] for row in queued_rows("external_id")] == ["ada"]
    # The external id's row holds the username, not the email: it is not read nor queued again.
    assert snapshots("external_id") == external_ids

    user.username = "countess"
    user.save()
    assert [row["username"] for row in queued_rows("external_id")] == ["countess"]
    assert queued_rows("user_profile")[-1]["username"] == "countess"

    assert drain().ok  # sent: a change now queues new snapshots
    user.username = "ada"
    user.save()
    assert Snapshot.objects.filter(reason="user saved").values_list("producer", flat=True).count() == 2
    assert [row["username"] for row in queued_rows("external_id", [OutboxEntry.Status.PENDING])] == ["ada"]


def test_an_external_id_queues_its_row():
    user = make_learner()
    external_id = give_external_id(user, "xapi")
    (row,) = queued_rows("external_id")
    assert fixed_fields(row, "external_id", external_id.pk) == {
        "external_user_id": str(external_id.external_user_id), "external_id_type": "xapi", "username": "ada",
        "user_id": user.pk,
    }
    uuid.UUID(row["external_user_id"])


def test_taxonomies_tags_and_object_tags_queue_their_rows_and_the_tagged_course_is_requested_again():
    taxonomy, (science, physics) = taxonomy_with_tags()
    object_tag = tag_object(COURSE, physics)
    block_tag = tag_object(f"block-v1:{COURSE.org}+{COURSE.course}+{COURSE.run}+type@html+block@intro", science)
    tag_object("lb:LibX:lib1:html:intro", science)  # a library block: no course to requeue

    assert [fixed_fields(row, "taxonomy", taxonomy.pk) for row in queued_rows("taxonomy")] == [
        {"id": taxonomy.pk, "name": "Subjects"}]
    rows = {row["id"]: row for row in queued_rows("tag")}
    # A tag saved without an external id has none up to openedx-core 0.x; 1.x makes one from its value.
    assert fixed_fields(rows[science.pk], "tag", science.pk) == {
        "id": science.pk, "taxonomy": taxonomy.pk, "parent": 0, "value": "Science",
        "external_id": science.external_id or "", "lineage": '["Science"]'}
    assert fixed_fields(rows[physics.pk], "tag", physics.pk) == {
        "id": physics.pk, "taxonomy": taxonomy.pk, "parent": science.pk, "value": "Physics",
        "external_id": physics.external_id or "", "lineage": '["Science", "Physics"]'}
    object_rows = {row["id"]: row for row in queued_rows("object_tag")}
    assert fixed_fields(object_rows[object_tag.pk], "object_tag", object_tag.pk) == {
        "id": object_tag.pk, "object_id": str(COURSE), "taxonomy": taxonomy.pk, "tag": physics.pk,
        "_value": "Physics", "_export_id": "subjects", "lineage": '["Science", "Physics"]'}
    assert object_rows[block_tag.pk]["object_id"].startswith("block-v1:")
    # The course's rows list its tags and its blocks' tags: both changes request it again (one request, cheap).
    requests = Snapshot.objects.filter(producer="course_structure").exclude(status=Snapshot.Status.SUPERSEDED)
    assert [(request.subject, request.status, request.reason) for request in requests] == [
        (str(COURSE), Snapshot.Status.REQUESTED, TAGS_CHANGED)]


def test_a_free_text_object_tag_has_no_tag_and_its_value_as_lineage():
    taxonomy, _ = taxonomy_with_tags(values=())
    taxonomy.allow_free_text = True
    taxonomy.save()
    free = tagging_model("ObjectTag").objects.create(object_id=str(COURSE), taxonomy=taxonomy, _value="anything", _export_id="subjects")
    row = {row["id"]: row for row in queued_rows("object_tag")}[free.pk]
    assert (row["tag"], row["lineage"]) == (0, '["anything"]')


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("change", ["enrollment", "profile", "external_id", "tags"])
def test_a_change_that_rolls_back_queues_nothing(change):
    class ChangeFailed(Exception):
        pass

    user = make_learner() if change != "tags" else None
    Snapshot.objects.all().delete()
    with pytest.raises(ChangeFailed):
        with transaction.atomic():
            if change == "enrollment":
                enroll(user)
            elif change == "profile":
                profile = UserProfile.objects.get(user=user)
                profile.name = "Ada King"
                profile.save()
            elif change == "external_id":
                give_external_id(user)
            else:
                tag_object(COURSE, taxonomy_with_tags()[1][0])
            assert Snapshot.objects.exists() and OutboxEntry.objects.exists()  # written in the change's transaction
            raise ChangeFailed
    assert not connection.in_atomic_block
    assert not Snapshot.objects.exists() and not OutboxEntry.objects.exists()


def test_a_producer_that_is_off_queues_nothing(settings):
    settings.CLICKHOUSE_OUTBOX_USER_PROFILE_ENABLED = False
    settings.CLICKHOUSE_OUTBOX_COURSE_ENROLLMENT_ENABLED = None  # follows the peer's switch, which is off
    enroll(make_learner())
    assert not Snapshot.objects.filter(producer__in=["user_profile", "course_enrollment"]).exists()
    settings.EVENT_SINK_CLICKHOUSE_COURSE_ENROLLMENT_ENABLED = True  # the peer's switch, seed-compatible
    enroll(make_learner("grace"))
    assert Snapshot.objects.filter(producer="course_enrollment", status=Snapshot.Status.QUEUED).count() == 1


def test_the_peers_waffle_flag_turns_a_producer_on():
    from waffle.models import Flag

    from clickhouse_outbox.producers.course_enrollment import ENROLLMENTS

    with pytest.MonkeyPatch.context() as patch:
        from django.conf import settings

        patch.setattr(settings, "CLICKHOUSE_OUTBOX_COURSE_ENROLLMENT_ENABLED", None, raising=False)
        assert not ENROLLMENTS.enabled
        Flag.objects.create(name="event_sink_clickhouse.course_enrollment.enabled", everyone=True)
        assert ENROLLMENTS.enabled


def test_an_enrollment_event_without_its_row_is_kept_as_a_failed_snapshot():
    from openedx_events.learning.signals import COURSE_ENROLLMENT_CHANGED

    from outbox_project.platform.models import CourseEnrollment
    from tests.learners import event_data

    user = make_learner()
    ghost = CourseEnrollment(user=user, course_id=COURSE, mode="audit", is_active=True)  # never saved
    COURSE_ENROLLMENT_CHANGED.send_event(enrollment=event_data(ghost))
    failed = Snapshot.objects.get(producer="course_enrollment")
    assert failed.status == Snapshot.Status.FAILED
    assert f"no enrollment of user {user.pk} in {COURSE}" in failed.error
