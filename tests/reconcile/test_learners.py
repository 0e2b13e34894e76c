"""
Verification of the other producers: enrollments, profiles, external ids and tags, each
compared by its dump_id like a course; a retired learner's deleted rows are not a
difference; a ReplacingMergeTree table's copies (it folds them itself) are no false alarm.
"""

import pytest

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.models import Snapshot
from clickhouse_outbox.outbox.drain import drain_until_empty
from clickhouse_outbox.receivers import user_retired
from outbox_project.platform.models import CourseEnrollment
from tests.learners import enroll, give_external_id, make_learner, tag_object, taxonomy_with_tags
from tests.reconcile.helpers import delete_rows, differ, verify

pytestmark = pytest.mark.django_db

PRODUCERS = ("course_enrollment", "user_profile", "external_id", "taxonomy", "tag", "object_tag")


def every(*names):
    return [arg for name in names for arg in ("--producer", name)]


@pytest.fixture
def learners(clickhouse):
    users = [make_learner(f"learner{n}", f"Learner {n}") for n in range(3)]
    for user in users:
        enroll(user)
        give_external_id(user)
    _, tags = taxonomy_with_tags()
    tag_object("course-v1:LearnX+L101+2026", tags[-1])
    assert drain_until_empty(timeout=60)[0].ok
    return users


def test_a_delivered_site_of_learners_and_tags_verifies_ok(learners):
    code, report = verify(*every(*PRODUCERS))
    never = {subject for subject, (verdict, _) in differ(report).items() if verdict == "never"}
    # openedx_tagging's migrations make the Languages taxonomy and its tags (up to openedx-core 0.x, Ulmo's
    # openedx-learning too): nothing sent them yet.
    assert {row["producer"] for row in report["differ"]} <= {"taxonomy", "tag"}
    assert {row["verdict"] for row in report["differ"]} <= {"never"}
    code, report = verify(*every(*PRODUCERS), "--repair")
    assert drain_until_empty(timeout=60)[0].ok
    code, report = verify(*every(*PRODUCERS))
    assert (code, report["differ"]) == (0, []), never


def test_an_enrollment_deleted_in_clickhouse_is_found_and_repaired(learners, clickhouse):
    enrollment = CourseEnrollment.objects.get(user=learners[1])
    delete_rows(clickhouse, "course_enrollment", f"id = {enrollment.pk}")

    code, report = verify("--producer", "course_enrollment")

    assert code == 1
    assert differ(report) == {str(enrollment.pk): ("absent", {"tables": {
        "course_enrollment": {"expected": 1, "found": 0, "distinct": 0}}})}
    assert report["counts"]["ok"] == 2
    verify("--producer", "course_enrollment", "--repair")
    assert drain_until_empty(timeout=60)[0].ok
    assert verify("--producer", "course_enrollment")[0] == 0


def test_a_profile_sent_twice_is_no_false_alarm_an_enrollment_sent_twice_is(learners, clickhouse):
    for table, subject in (("user_profile", learners[0].profile.pk),
                           ("course_enrollment", CourseEnrollment.objects.get(user=learners[0]).pk)):
        snapshot = Snapshot.objects.filter(producer=table, subject=str(subject)).latest("id")
        lines = b"".join(entry.lines() for entry in snapshot.entries.all())
        clickhouse.command(f"INSERT INTO {qualified_name(clickhouse.database, table)} FORMAT JSONEachRow\n"
                           f"{lines.decode()}")

    profiles = verify("--producer", "user_profile")
    enrollments = verify("--producer", "course_enrollment")

    assert profiles[0] == 0, profiles  # ReplacingMergeTree: ClickHouse folds the copy itself
    assert enrollments[0] == 1
    (verdict, details), = differ(enrollments[1]).values()
    assert (verdict, details["tables"]["course_enrollment"]) == ("duplicates", {"expected": 1, "found": 2,
                                                                                "distinct": 1})


def test_a_retired_learner_is_not_a_difference(learners):
    user_retired(sender=None, user=learners[2])
    assert drain_until_empty(timeout=60)[0].ok

    code, report = verify(*every("course_enrollment", "user_profile", "external_id"))

    assert (code, report["differ"]) == (0, [])
    assert report["counts"]["ok"] == 9
