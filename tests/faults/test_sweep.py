"""
Writes without signals (issue 19, goal 3): learner and tag rows written with `bulk_create`,
`QuerySet.update()` and raw SQL reach the real ClickHouse test server with nobody running a
command: what the beat entries run (the sweep's task, then the drain's), in this process.
"""

import json
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.outbox.drain import drain_until_empty
from clickhouse_outbox.schedule import SWEEP_BEAT_ENTRY, SWEEP_TASK, install_sweep_entry
from clickhouse_outbox.tasks import drain_outbox, sweep_outbox
from outbox_project.platform.models import CourseEnrollment, ExternalId, ExternalIdType, UserProfile
from tests.learners import enroll, give_external_id, make_learner, tag_object, tagging_model, taxonomy_with_tags

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

COURSE = "course-v1:SweepX+S1+2026"


def latest_rows(backend, table, key):
    """{key: the row with the latest time_last_dumped} that ClickHouse holds in `table`."""
    rows = backend.query(f"SELECT * FROM {qualified_name(backend.database, table)}")
    latest = {}
    for row in sorted(rows, key=lambda row: row["time_last_dumped"]):
        latest[str(row[key])] = row
    return latest


def the_beat_runs():
    """What celery beat runs, one after the other: the sweep's entry, then the drain's, until nothing is left."""
    result = sweep_outbox()
    assert not result["skipped"], result
    for _ in range(20):
        drained = drain_outbox()
        if not drained["rows_sent"] and not drained["batches_retrying"]:
            break
    return {row["producer"]: row for row in result["producers"]}


@pytest.mark.parametrize(("interval", "scheduled"), [(None, False), (0, False), (300, True)])
def test_the_sweep_is_off_unless_an_interval_is_set(interval, scheduled):
    settings = SimpleNamespace(CELERYBEAT_SCHEDULE={})
    if interval is not None:
        settings.CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS = interval
    install_sweep_entry(settings)
    assert (SWEEP_BEAT_ENTRY in settings.CELERYBEAT_SCHEDULE) is scheduled
    if scheduled:
        assert settings.CELERYBEAT_SCHEDULE[SWEEP_BEAT_ENTRY]["task"] == SWEEP_TASK


def test_the_package_leaves_the_sweep_off(settings):
    assert settings.CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS == 0
    assert SWEEP_BEAT_ENTRY not in getattr(settings, "CELERY_BEAT_SCHEDULE", {})


def test_rows_written_without_signals_reach_clickhouse(server_clickhouse):
    backend = server_clickhouse
    user_model = get_user_model()
    # A site as signals leave it, delivered.
    signalled = [make_learner(f"signalled{n}", f"Signalled {n}") for n in range(3)]
    enrollments = [enroll(user, COURSE) for user in signalled]
    give_external_id(signalled[0])
    _, tags = taxonomy_with_tags("Sweeping", ("Broom", "Brush"))
    tag_object(COURSE, tags[-1])
    assert drain_until_empty(timeout=60)[0].ok
    first = the_beat_runs()  # the first sweep finds what signals sent (and openedx_tagging's own taxonomy)
    assert first["user_profile"]["queued"] == 0 and first["course_enrollment"]["queued"] == 0

    # bulk_create: users and profiles made by a script, LTI external ids (batch_get_or_create_user_ids), enrollments.
    user_model.objects.bulk_create([user_model(username=f"bulk{n}", email=f"bulk{n}@example.com") for n in range(4)])
    bulk_users = list(user_model.objects.filter(username__startswith="bulk").order_by("id"))
    UserProfile.objects.bulk_create([UserProfile(user=user, name=f"Bulk {user.username}") for user in bulk_users])
    lti = ExternalIdType.objects.create(name="lti")
    ExternalId.objects.bulk_create([ExternalId(user=user, external_id_type=lti) for user in [*signalled, *bulk_users]])
    CourseEnrollment.objects.bulk_create([CourseEnrollment(user=user, course_id=COURSE, mode="audit", is_active=True)
                                          for user in bulk_users])
    # QuerySet.update(): a profile, an enrollment's mode, a user's email (in the profile's row), a tag's value.
    UserProfile.objects.filter(user=signalled[0]).update(city="Lyon", country="FR")
    CourseEnrollment.objects.filter(pk=enrollments[1].pk).update(mode="verified")
    user_model.objects.filter(pk=signalled[2].pk).update(email="signalled2@example.org")
    tagging_model("Tag").objects.filter(pk=tags[0].pk).update(value="Besom")
    # Raw SQL: a name and an enrollment's end.
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {quote(UserProfile._meta.db_table)} SET name = %s WHERE user_id = %s",
                       ["Renamed By SQL", signalled[1].pk])
        cursor.execute(f"UPDATE {quote(CourseEnrollment._meta.db_table)} SET is_active = %s WHERE id = %s",
                       [False, enrollments[2].pk])

    results = the_beat_runs()

    profiles = latest_rows(backend, "user_profile", "user_id")
    assert {str(user.pk) for user in [*signalled, *bulk_users]} <= set(profiles)
    assert [profiles[str(user.pk)]["name"] for user in bulk_users] == [f"Bulk bulk{n}" for n in range(4)]
    assert (profiles[str(signalled[0].pk)]["city"], profiles[str(signalled[0].pk)]["country"]) == ("Lyon", "FR")
    assert profiles[str(signalled[1].pk)]["name"] == "Renamed By SQL"
    assert profiles[str(signalled[2].pk)]["email"] == "signalled2@example.org"
    external = latest_rows(backend, "external_id", "external_user_id")
    assert {str(value) for value in ExternalId.objects.values_list("external_user_id", flat=True)} == set(external)
    assert sum(row["external_id_type"] == "lti" for row in external.values()) == 7
    enrolled = latest_rows(backend, "course_enrollment", "id")
    assert {str(pk) for pk in CourseEnrollment.objects.values_list("pk", flat=True)} == set(enrolled)
    assert enrolled[str(enrollments[1].pk)]["mode"] == "verified"
    assert int(enrolled[str(enrollments[2].pk)]["is_active"]) == 0  # UInt8 on 18.16
    held_tags = latest_rows(backend, "tag", "id")
    assert held_tags[str(tags[0].pk)]["value"] == "Besom"
    assert json.loads(held_tags[str(tags[1].pk)]["lineage"]) == ["Besom", "Brush"]  # its lineage changed too
    # Each row that changed queued once: 4 new profiles + 3 changed; 7 external ids; 4 new enrollments + 2 changed.
    assert (results["user_profile"]["queued"], results["external_id"]["queued"],
            results["course_enrollment"]["queued"]) == (7, 7, 6)

    again = the_beat_runs()
    assert sum(result["queued"] for result in again.values()) == 0, again
    assert sum(result["compared"] for result in again.values()) == 0, again
