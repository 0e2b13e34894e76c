"""
`outbox_verify` on learner and tag tables compares content, not only presence: a profile
changed by `QuerySet.update()` (no signal) is reported as differing, with the columns that
differ and none of their values, and `--repair` sends the source's row; on the 18.16 server
and on chdb.
"""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.clickhouse.tables import USER_PROFILE
from clickhouse_outbox.outbox.drain import drain_until_empty
from clickhouse_outbox.reconcile.content import latest_held, parts
from outbox_project.platform.models import CourseEnrollment, ExternalId, UserProfile
from tests.learners import enroll, give_external_id, make_learner
from tests.reconcile.helpers import differ, verify

pytestmark = pytest.mark.django_db


@pytest.fixture
def learners(clickhouse):
    users = [make_learner(f"learner{n}", f"Learner {n}") for n in range(3)]
    for user in users:
        enroll(user)
        give_external_id(user)
    assert drain_until_empty(timeout=60)[0].ok
    return users


def test_a_profile_changed_by_update_is_reported_and_repaired(learners, clickhouse):
    profile = UserProfile.objects.get(user=learners[1])
    UserProfile.objects.filter(pk=profile.pk).update(city="Lyon", bio="A secret bio")

    code, report = verify("--producer", "user_profile")

    assert code == 1
    assert report["counts"]["differs"] == 1 and report["counts"]["ok"] == 2
    verdict, details = differ(report)[str(profile.pk)]
    assert (verdict, details["content"]) == ("differs", {"user_profile": ["bio", "city"]})
    assert "Lyon" not in str(report) and "secret" not in str(report)  # column names, never values
    text = io.StringIO()
    with pytest.raises(Exception):  # noqa: B017,PT011 (CommandError: exit status 1)
        call_command("outbox_verify", "--producer", "user_profile", stdout=text)
    assert f"user_profile {profile.pk}: content differs from the source: user_profile: bio, city differ from the source" \
        in text.getvalue()

    code, report = verify("--producer", "user_profile", "--repair")
    assert report["repair_job"]
    assert drain_until_empty(timeout=60)[0].ok
    code, report = verify("--producer", "user_profile")
    assert (code, report["differ"]) == (0, [])
    held = clickhouse.query(f"SELECT city FROM {qualified_name(clickhouse.database, 'user_profile')} "
                            f"WHERE id = {profile.pk} ORDER BY time_last_dumped DESC LIMIT 1")
    assert held == [{"city": "Lyon"}]


def test_enrollments_external_ids_and_emails_changed_without_signals_are_found(learners):
    enrollment = CourseEnrollment.objects.get(user=learners[0])
    CourseEnrollment.objects.filter(pk=enrollment.pk).update(is_active=False)
    get_user_model().objects.filter(pk=learners[2].pk).update(username="renamed")  # in 3 tables' rows

    code, report = verify("--producer", "course_enrollment", "--producer", "external_id", "--producer", "user_profile")

    found = {(row["producer"], row["subject"]): row["details"].get("content") for row in report["differ"]}
    renamed_enrollment = CourseEnrollment.objects.get(user=learners[2])
    assert found == {
        ("course_enrollment", str(enrollment.pk)): {"course_enrollment": ["is_active"]},
        ("course_enrollment", str(renamed_enrollment.pk)): {"course_enrollment": ["username"]},
        ("external_id", str(ExternalId.objects.get(user=learners[2]).pk)): {"external_id": ["username"]},
        ("user_profile", str(UserProfile.objects.get(user=learners[2]).pk)): {"user_profile": ["username"]},
    }
    assert code == 1


def test_a_row_that_was_not_changed_is_not_reported(learners):
    code, report = verify("--producer", "user_profile", "--producer", "course_enrollment", "--producer", "external_id")
    assert (code, report["differ"]) == (0, [])
    assert report["counts"]["ok"] == 9


def test_the_latest_version_is_compared_and_queries_are_sized_by_bytes(learners, clickhouse):
    profiles = list(UserProfile.objects.filter(user__in=learners).order_by("pk"))
    keys = [profile.pk for profile in profiles]
    # A tiny room: one key per query, and the latest version still found for each.
    held = latest_held(clickhouse, USER_PROFILE, "id", keys, [500] * len(keys), max_bytes=120, answer_bytes=10**9)
    assert sorted(int(key) for key in held) == keys
    assert list(parts([1, 2, 3], [100, 100, 100], 1000, answer_bytes=800)) == [[1, 2], [3]]
    assert list(parts([1, 2, 3], [1, 1, 1], 6, answer_bytes=10**6)) == [[1, 2], [3]]
