"""
A retired learner's personal data, wherever the outbox kept it. Their profile, external id
and enrollment go through every path a row can take (sent, superseded, split, rejected by
ClickHouse with its error stored, a failed snapshot, a dump job, a deferred request, a
verification); after the retirement, with the default EVENT_SINK_CLICKHOUSE_PII_MODELS
(which leaves course_enrollment out), no username, email, name or other profile value of
theirs is left in any column of any table of the app: the tables are found by introspecting
the app's models, so a table added later is scanned too.
"""

import json

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from clickhouse_outbox import conf
from clickhouse_outbox.db import db_now
from clickhouse_outbox.dumps.jobs import start_job
from clickhouse_outbox.dumps.run import run_job
from clickhouse_outbox.models import Batch, DumpJob, OutboxEntry, Snapshot
from clickhouse_outbox.outbox import changes, deletes, registry
from clickhouse_outbox.outbox.drain import drain
from clickhouse_outbox.producers import user_profile
from clickhouse_outbox.receivers import user_retired
from outbox_project.platform.models import UserProfile
from tests.learners import change_enrollment, enroll, give_external_id, make_learner
from tests.outbox.helpers import app_tables, as_bytes, drain_until_settled, drift

pytestmark = pytest.mark.django_db

#: Zed's values: distinctive, some with characters JSON escapes (quotes, braces, non-ASCII).
ZED_USER = {"username": "zqvargas", "email": "zeb.q.vargas@quillhaven.example"}
ZED_PROFILE = {
    "name": "Zebulon Quixote-Vargas Ñandú",
    "location": "Quillhaven lighthouse",
    "city": "Vexmoor-on-Sea",
    "mailing_address": "17 Wobblestone Lane, Vexmoor",
    "goals": "Tame a quokka",
    "bio": 'Collector of "antique" kazoos',
    "phone_number": "+44 7700 900461",
    "meta": '{"zq_secret": "Flibbertigibbet"}',
    "language": "Zebrish",
}
#: What the profile becomes before the first drain (so the first snapshot is superseded), then later.
ZED_GOALS = ("Tame two quokkas and a wombat", "Retire to Quillhaven")
ZED_VALUES = (*ZED_USER.values(), *ZED_PROFILE.values(), *ZED_GOALS, "Flibbertigibbet")


def make_zed():
    user = get_user_model().objects.create(**ZED_USER)
    UserProfile.objects.create(user=user, **ZED_PROFILE)
    return user


def forms(value):
    """The ways a value can be stored: raw, and JSON-escaped (ASCII escapes or not)."""
    return {value.encode(), json.dumps(value)[1:-1].encode(), json.dumps(value, ensure_ascii=False)[1:-1].encode()}




def found(values):
    """{(table, column, row id): [values]} of every stored value holding one of `values`, in any form."""
    wanted = {value: forms(value) for value in values}
    hits = {}
    for model in app_tables():
        columns = [field.attname for field in model._meta.concrete_fields]
        for row in model.objects.values_list(*columns):
            for column, value in zip(columns, row, strict=True):
                stored = as_bytes(value)
                matched = [name for name, variants in wanted.items() if any(form in stored for form in variants)]
                if matched:
                    hits[(model._meta.db_table, column, row[0])] = matched
    return hits




def fail_to_serialize(profile, **kwargs):
    """A serializer error that quotes the row's data, as a real one may (an injected fault: none can be made on demand)."""
    raise ValueError(f"cannot encode the profile of {profile.name!r} <{profile.user.email}>")


def fail_to_encode(**kwargs):
    """The same error from the encoder of PROFILE_VALUES tuples (a whole-table dump's rows, the deferred drain's)."""
    def encode(row):
        raise ValueError(f"cannot encode the profile of {row[2]!r} <{row[4]}>")
    return encode


def break_profile_serializers(monkeypatch):
    monkeypatch.setattr(user_profile, "profile_row", fail_to_serialize)
    monkeypatch.setattr(user_profile, "profile_values_encoder", fail_to_encode)


@pytest.fixture
def default_pii_list(settings):
    if hasattr(settings, "EVENT_SINK_CLICKHOUSE_PII_MODELS"):
        del settings.EVENT_SINK_CLICKHOUSE_PII_MODELS
    assert conf.pii_tables() == conf.DEFAULT_PII_MODELS == ("user_profile", "external_id")


def test_a_retirement_leaves_none_of_the_learners_values_in_any_table_of_the_outbox(
    clickhouse, settings, monkeypatch, default_pii_list
):
    zed, grace = make_zed(), make_learner("grace", "Grace Hopper")
    give_external_id(zed)
    enrollments = [enroll(zed), enroll(grace)]
    profile = UserProfile.objects.get(user=zed)
    profile.goals = ZED_GOALS[0]
    changes.forget()  # another request (this test runs in one transaction)
    profile.save()  # before any drain: the first profile snapshot is superseded when claimed
    assert drain().ok  # sent, kept for the retention period
    assert OutboxEntry.objects.filter(status=OutboxEntry.Status.SUPERSEDED, table="user_profile").exists()

    drift(clickhouse, "course_enrollment", "username", "UInt32")  # every enrollment row is rejected now
    for enrollment in enrollments:
        change_enrollment(enrollment, mode="verified")
    drain_until_settled()  # one batch of both rows, split in two, each part failed with ClickHouse's error
    assert Batch.objects.filter(table="course_enrollment", status=Batch.Status.SPLIT).exists()
    assert Batch.objects.filter(table="course_enrollment", status=Batch.Status.FAILED).count() == 2

    break_profile_serializers(monkeypatch)
    profile.save()  # a failed snapshot, its traceback quoting the data
    run_job(start_job(DumpJob.Scope.ALL, origin="test", producers=["user_profile"]))  # by key range: failed snapshots
    failed_dump = run_job(start_job(DumpJob.Scope.SELECTED, origin="test", subjects=[("user_profile", str(profile.pk))]))
    monkeypatch.undo()
    assert Snapshot.objects.filter(producer="user_profile", status=Snapshot.Status.FAILED).count() == 4  # Zed's 3 times
    assert Snapshot.objects.filter(producer="user_profile", reason="backfill", error__contains="Ñandú").exists()
    assert failed_dump.items.filter(error__contains="Ñandú").exists()
    run_job(start_job(DumpJob.Scope.ALL, origin="test", producers=["user_profile", "external_id", "course_enrollment"]))
    run_job(start_job(DumpJob.Scope.ALL, origin="test", producers=["user_profile"], action=DumpJob.Action.VERIFY))

    settings.CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain"
    profile.goals = ZED_GOALS[1]
    profile.save()  # a request, filled by the next drain
    drain()
    assert Snapshot.objects.filter(producer="user_profile", reason="saved", status=Snapshot.Status.QUEUED,
                                   user_id=zed.pk).exists()
    profile.save()  # a request no drain has taken yet
    before = found(ZED_VALUES)
    assert {table for table, _, _ in before} >= {"clickhouse_outbox_outboxentry", "clickhouse_outbox_snapshot",
                                                 "clickhouse_outbox_dumpjobitem"}

    with transaction.atomic():
        user_retired(sender=None, user=zed)
    assert found(ZED_VALUES) == {}

    # Everything after: nothing of Zed's is queued again, by any producer or path.
    change_enrollment(enrollments[0], mode="audit")
    profile.save()
    settings.CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "publish"
    profile.save()
    run_job(start_job(DumpJob.Scope.ALL, origin="test", producers=["user_profile", "external_id", "course_enrollment"]))
    drain_until_settled()
    assert found(ZED_VALUES) == {}
    # The scan finds what is there: Grace's rows were not touched.
    assert {table for table, _, _ in found(["Grace Hopper", "grace@example.com"])} >= {"clickhouse_outbox_outboxentry"}


def test_every_snapshot_of_a_producer_of_personal_data_names_its_user(clickhouse, settings, monkeypatch):
    """The retirement finds a user's rows by Snapshot.user_id: every path that writes one sets it."""
    personal = {producer.name for producer in registry.all_producers() if producer.personal_data}
    assert personal == {"course_enrollment", "user_profile", "external_id"}
    ada = make_learner()
    give_external_id(ada)
    enroll(ada)  # taken at the change
    settings.CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain"
    UserProfile.objects.get(user=ada).save()  # a request, filled by the drain
    drain()
    run_job(start_job(DumpJob.Scope.ALL, origin="test", producers=sorted(personal)))
    break_profile_serializers(monkeypatch)
    UserProfile.objects.get(user=ada).save()  # a request that fails when taken
    drain()
    settings.CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "publish"
    UserProfile.objects.get(user=ada).save()  # a failure at the change
    run_job(start_job(DumpJob.Scope.ALL, origin="test", producers=["user_profile"]))  # ...and in a dump
    monkeypatch.undo()

    # A chunk of a whole-table dump holds many users' rows: a retirement finds it by the users' keys.
    chunks = Snapshot.objects.filter(producer__in=personal, chunk__isnull=False)
    assert set(chunks.values_list("producer", flat=True)) == personal
    assert not chunks.exclude(user_id=None).exists()
    snapshots = Snapshot.objects.filter(producer__in=personal, chunk__isnull=True)
    assert set(snapshots.values_list("status", flat=True)) >= {Snapshot.Status.QUEUED, Snapshot.Status.FAILED}
    assert snapshots.filter(status=Snapshot.Status.FAILED).count() == 3
    assert not snapshots.exclude(user_id=ada.pk).exists(), list(snapshots.exclude(user_id=ada.pk).values(
        "producer", "status", "reason"))


def test_an_enrollment_event_without_its_row_is_recorded_with_its_user():
    from openedx_events.learning.data import CourseData, CourseEnrollmentData, UserData, UserPersonalData
    from openedx_events.learning.signals import COURSE_ENROLLMENT_CHANGED

    from tests.learners import COURSE

    ada = make_learner()
    COURSE_ENROLLMENT_CHANGED.send_event(enrollment=CourseEnrollmentData(
        user=UserData(id=ada.pk, is_active=True, pii=UserPersonalData(username="ada", email="", name="")),
        course=CourseData(course_key=COURSE), mode="audit", is_active=True, creation_date=db_now(),
    ))
    failed = Snapshot.objects.get(producer="course_enrollment", status=Snapshot.Status.FAILED)
    assert failed.user_id == ada.pk


def test_nothing_of_a_retired_user_is_queued_again_by_any_producer_of_personal_data(default_pii_list):
    ada = make_learner()
    enrollment = enroll(ada)
    give_external_id(ada, kind="lti")
    user_retired(sender=None, user=ada)
    assert not OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING, kind="insert").exists()

    change_enrollment(enrollment, mode="verified")  # course_enrollment is not in the PII list...
    give_external_id(ada, kind="xapi")
    UserProfile.objects.get(user=ada).save()
    assert not OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING, kind="insert").exists()  # ...nor queued
    assert Snapshot.objects.get(producer=deletes.RETIREMENT).entries.count() == 2  # deletes: the PII list's tables


def test_a_retirement_scrubs_the_outbox_even_with_retirement_deletes_off(settings):
    """CLICKHOUSE_OUTBOX_USER_RETIREMENT_ENABLED = False turns off the deletes in ClickHouse, not the outbox's scrub."""
    settings.CLICKHOUSE_OUTBOX_USER_RETIREMENT_ENABLED = False
    ada = make_learner()
    enroll(ada)
    user_retired(sender=None, user=ada)
    retirement = Snapshot.objects.get(producer=deletes.RETIREMENT)
    assert retirement.entries.count() == 0
    assert not found(["Ada Lovelace", "ada@example.com", '"username":"ada"'])
    UserProfile.objects.get(user=ada).save()
    assert not found(["Ada Lovelace"])


def test_a_retirement_finds_the_users_snapshots_by_subject_too(monkeypatch, default_pii_list):
    """A failed snapshot kept before snapshots named their user, or a request not taken yet: found by its subject."""
    zed = make_zed()
    monkeypatch.setattr(user_profile, "profile_row", fail_to_serialize)
    UserProfile.objects.get(user=zed).save()
    monkeypatch.undo()
    Snapshot.objects.update(user_id=None)  # as a release before this one recorded it
    assert found(ZED_VALUES)
    user_retired(sender=None, user=zed)
    assert found(ZED_VALUES) == {}
    assert set(Snapshot.objects.filter(producer="user_profile").values_list("status", flat=True)) == {"deleted"}
