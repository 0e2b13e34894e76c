"""
The deferred drain fills learner requests set-based (decision record 0015): the rows read as
`values_list()` tuples and serialized without a model instance. Its lines must be the bytes
the producer's own serializer writes for the same row's instance (what a change in publish
mode queues): non-ASCII text, NULLs, booleans, dates with and without microseconds. And the
guarantees of the fill: a request made without its user is named, an unknown row's request
fails, the newest of a row's requests is filled and the older superseded. Every database;
no ClickHouse (the fill only writes the outbox).
"""

import contextlib
import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections, transaction
from django.db.models import F

from clickhouse_outbox.db import db_now
from clickhouse_outbox.models import OutboxEntry, Snapshot
from clickhouse_outbox.outbox import registry, requested
from clickhouse_outbox.outbox.drain import drain
from clickhouse_outbox.serializers.payloads import decompress
from outbox_project.platform.models import CourseEnrollment, UserProfile
from tests.learners import give_external_id

pytestmark = pytest.mark.django_db(transaction=True)

PRODUCERS = ("course_enrollment", "user_profile", "external_id")
ODD_TEXT = 'Ñandú "quoted" \\ back\tslash\n€ 𝄞 \x01\x1f end'


def site():
    """Learners whose rows hold every kind of value the serializers encode."""
    user_model = get_user_model()
    zed = user_model.objects.create(username="zéd_ñandú", email="zéd@exämple.com")
    ada = user_model.objects.create(username="ada", email="ada@example.com")
    UserProfile.objects.create(  # every nullable column NULL, the text ones empty
        user=ada, gender=None, level_of_education=None, mailing_address=None, city=None, country=None, state=None,
        goals=None, bio=None, phone_number=None, year_of_birth=None, profile_image_uploaded_at=None)
    UserProfile.objects.create(
        user=zed, name=ODD_TEXT, meta='{"a": "ü", "b": [1, null]}', courseware="course.xml", language="日本語",
        location="Zürich", year_of_birth=1815, gender="f", level_of_education="p", mailing_address=ODD_TEXT,
        city="Åre", country="SE", state="", goals="∑ goals", bio=ODD_TEXT * 3, phone_number="+46 (0) 1",
        profile_image_uploaded_at=datetime(2026, 2, 3, 4, 5, 6, 789012, tzinfo=timezone.utc))
    for user, key, active, created in (
        (zed, "course-v1:ÉcoleX+Été+2026", True, datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
        (zed, "course-v1:LearnX+L101+2026", False, datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=timezone.utc)),
        (ada, "course-v1:LearnX+L101+2026", True, None),
    ):
        enrollment = CourseEnrollment.objects.create(user=user, course_id=key, is_active=active, mode="vérifié")
        CourseEnrollment.objects.filter(pk=enrollment.pk).update(created=created)  # auto_now_add: set after
    give_external_id(zed, kind="lti_ñ")
    give_external_id(ada)
    return zed, ada


def request_all(producer, *, named=True):
    """A request for every row of `producer`, as changes in deferred mode make them (or a requeue: no user)."""
    return [Snapshot.objects.create(producer=producer.name, subject=str(pk), user_id=user_id if named else None,
                                    reason="test", status=Snapshot.Status.REQUESTED)
            for pk, user_id in producer.queryset().values_list("pk", "user_id")]


@pytest.mark.parametrize("name", PRODUCERS)
def test_the_fill_writes_the_bytes_the_producers_serializer_writes(name):
    site()
    producer = registry.get(name)
    requests = request_all(producer)
    assert requested.take_requested() == len(requests) >= 2

    instances = {str(obj.pk): obj for obj in producer.queryset()}
    for request in requests:
        request.refresh_from_db()
        assert request.status == Snapshot.Status.QUEUED
        (entry,) = OutboxEntry.objects.filter(snapshot=request)
        expected = producer.serialize(instances[request.subject], dump_id=request.dump_id,
                                      time_last_dumped=request.time_last_dumped)
        assert decompress(entry.payload, entry.encoding) == expected, request.subject


def test_the_values_path_and_the_instance_path_agree_row_for_row():
    """The same comparison without the drain, for every producer at once: a row left out fails it."""
    site()
    for name in PRODUCERS:
        producer = registry.get(name)
        instances = {str(obj.pk): obj for obj in producer.queryset()}
        rows = producer.rows_by_key([int(pk) for pk in instances])
        assert rows.keys() == instances.keys()
        for dump_id, time_text in (("6f1c0c6e-0000-4000-8000-000000000001", "2026-12-06 06:00:00.000001+00:00"),
                                   ("", "")):  # and emptied, as the fill hashes it
            encode = producer.values_encoder(dump_id=dump_id, time_last_dumped=time_text)
            for subject, obj in instances.items():
                assert (encode(rows[subject])
                        == producer.serialize(obj, dump_id=dump_id, time_last_dumped=time_text)), (name, subject)


def test_requests_without_their_user_are_named_and_an_unknown_rows_request_fails():
    zed, ada = site()
    producer = registry.get("course_enrollment")
    first = producer.queryset().order_by("pk").first()
    older = Snapshot.objects.create(producer=producer.name, subject=str(first.pk), user_id=first.user_id,
                                    reason="test", status=Snapshot.Status.REQUESTED)
    requests = request_all(producer, named=False)  # then a requeue in deferred mode, which names no user
    ghost = Snapshot.objects.create(producer=producer.name, subject="987654", reason="test",
                                    status=Snapshot.Status.REQUESTED)
    failed = []
    requested.take_requested(failed=failed)

    assert [(name, subject) for name, subject, _ in failed] == [(producer.name, "987654")]
    ghost.refresh_from_db()
    assert ghost.status == Snapshot.Status.FAILED and "no such enrollment" in ghost.error
    older.refresh_from_db()
    assert older.status == Snapshot.Status.SUPERSEDED
    owners = dict(producer.queryset().values_list("pk", "user_id"))
    filled = Snapshot.objects.filter(producer=producer.name, status=Snapshot.Status.QUEUED)
    assert sorted(filled.values_list("subject", "user_id")) == sorted((str(pk), user) for pk, user in owners.items())
    assert set(filled.values_list("pk", flat=True)) == {request.pk for request in requests}
    assert {zed.pk, ada.pk} == set(filled.values_list("user_id", flat=True))


def test_a_row_the_deferred_drain_filled_is_not_queued_again_by_the_sweep(settings):
    """
    The fill writes each row's digest on its snapshot, the value the publish path writes
    (`outbox.unchanged.row_digest`), so the sweep (decision record 0017) finds every row as
    sent and queues none of them again.
    """
    from clickhouse_outbox.reconcile.sweep import sweep  # noqa: PLC0415

    settings.CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain"
    site()
    for name in PRODUCERS:
        request_all(registry.get(name))
    assert requested.take_requested() >= 7

    results = {result.producer: result for result in sweep(list(PRODUCERS))}
    assert {name: (result.rows, result.queued) for name, result in results.items()} == {
        "course_enrollment": (3, 0), "user_profile": (2, 0), "external_id": (2, 0)}
    assert not Snapshot.objects.filter(reason="sweep").exists()


def test_by_lease_where_requests_are_not_locked_and_only_while_the_lease_is_held(monkeypatch):
    """
    The lease path (a one-row producer's requests on a database that cannot skip locked rows,
    nor is SQLite beginning its transactions with the write lock): a leased request is left to
    its holder, and a holder that lost its lease writes nothing; the fill writes digests too.
    """
    monkeypatch.setattr(requested, "locks_requests", lambda name, overrides: False)
    site()
    producer = registry.get("course_enrollment")
    request_all(producer)
    holder = uuid.uuid4()  # an owner naming no lock: only its lease frees what it holds
    held = requested.claim_requests(holder, 10)
    assert len(held) == 3 and requested.take_requested() == 0  # leased: nobody else takes them

    Snapshot.objects.filter(lease_owner=holder).update(lease_expires_at=F("lease_expires_at") - timedelta(days=1))
    assert requested.take_requested() == 3  # its lease ran out: taken by another
    filled = {row.pk: row for row in Snapshot.objects.filter(pk__in=[request.pk for request in held])}
    assert {row.status for row in filled.values()} == {Snapshot.Status.QUEUED}
    assert all(len(row.digest) == 32 for row in filled.values())
    entries = OutboxEntry.objects.count()

    requested.fill_rows(producer, held, holder, db_now(), [])  # the first holder wakes up and writes: refused
    assert OutboxEntry.objects.count() == entries
    assert {row.pk: (row.status, row.dump_id, row.time_last_dumped) for row in Snapshot.objects.filter(pk__in=filled)} == {
        pk: (row.status, row.dump_id, row.time_last_dumped) for pk, row in filled.items()}


@contextlib.contextmanager
def held_by_another_drainer(name, size=None):
    """
    The oldest free requests of producer `name` (up to `size`) locked as another drainer's
    fill locks them, in a transaction of its own connection, until the block ends; yields their ids.
    """
    held, locked, release = [], threading.Event(), threading.Event()

    def other_drainer():
        try:
            with transaction.atomic():
                held.extend(row.pk for row in requested.lock_requests(requested.free_requests(), name, size))
                locked.set()
                release.wait(30)
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_drainer)
    thread.start()
    try:
        assert locked.wait(30)
        yield held
    finally:
        release.set()
        thread.join(30)


@pytest.mark.skipif(connection.vendor == "sqlite", reason="SQLite has one writer: a transaction holds every row")
def test_requests_locked_by_another_drainers_transaction_are_skipped_then_taken():
    site()
    producer = registry.get("course_enrollment")
    requests = sorted(request.pk for request in request_all(producer))
    with held_by_another_drainer(producer.name, 1) as held:
        assert held == [requests[0]]
        assert requested.take_requested() == 2  # without waiting for the locked one
        assert Snapshot.objects.get(pk=requests[0]).status == Snapshot.Status.REQUESTED
    assert requested.take_requested() == 1
    assert set(Snapshot.objects.filter(pk__in=requests).values_list("status", flat=True)) == {Snapshot.Status.QUEUED}


@pytest.mark.skipif(connection.vendor == "sqlite", reason="SQLite has one writer: a transaction holds every row")
@pytest.mark.skipif(connection.vendor == "mysql", reason=(
    "InnoDB's locking read can lock requests it does not return (its plan on these tiny tables): whether the "
    "other producer's are held too is the planner's; the next drain takes them (seen once in five runs)"))
def test_a_producer_whose_requests_another_drainer_holds_does_not_stop_the_others_requests():
    site()
    enrollments = [request.pk for request in request_all(registry.get("course_enrollment"))]
    profiles = [request.pk for request in request_all(registry.get("user_profile"))]  # newer: taken after
    with held_by_another_drainer("course_enrollment") as held:  # the oldest producer's, every one
        assert sorted(held) == sorted(enrollments)
        assert requested.take_requested() == len(profiles)
        assert set(Snapshot.objects.filter(pk__in=profiles).values_list("status", flat=True)) == {Snapshot.Status.QUEUED}
    assert requested.take_requested() == len(enrollments)


@pytest.mark.skipif(connection.vendor == "sqlite", reason="SQLite has one writer: threads would fill one at a time")
def test_threads_fill_every_request_once(monkeypatch):
    site()
    requests = [request.pk for name in PRODUCERS for request in request_all(registry.get(name))]
    monkeypatch.setattr(requested, "FILL_CHUNK", 1)  # a chunk each: the threads share the work
    taken = requested.take_requested(threads=3)
    statuses = dict(Snapshot.objects.filter(pk__in=requests).values_list("pk", "status"))
    assert taken == len(requests), statuses
    assert set(Snapshot.objects.filter(pk__in=requests).values_list("status", flat=True)) == {Snapshot.Status.QUEUED}
    entries = list(OutboxEntry.objects.filter(snapshot__in=requests).values_list("snapshot_id", flat=True))
    assert sorted(entries) == sorted(requests)  # one entry each: no request filled twice


def fill_threads_seen(monkeypatch):
    """The names of the threads that run `fill_rows` from now on (the real one is called)."""
    seen, real = set(), requested.fill_rows

    def fill_rows(*args, **kwargs):
        seen.add(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(requested, "fill_rows", fill_rows)
    return seen


@pytest.mark.skipif(connection.vendor == "sqlite", reason="SQLite has one writer: it fills in one loop")
def test_a_drain_fills_in_CLICKHOUSE_OUTBOX_FILL_THREADS_loops_when_more_than_a_chunk_waits(monkeypatch, settings,
                                                                                           chdb_clickhouse):
    site()
    requests = [request.pk for name in PRODUCERS for request in request_all(registry.get(name))]
    monkeypatch.setattr(requested, "FILL_CHUNK", 1)  # more than a chunk waits
    seen = fill_threads_seen(monkeypatch)
    settings.CLICKHOUSE_OUTBOX_FILL_THREADS = 2

    result = drain(max_batches=0)  # the fill alone: no batch is sent
    assert result.snapshots_taken == len(requests)
    assert seen and all(name.startswith("clickhouse_outbox-fill") for name in seen - {"MainThread"}), seen
    assert any(name.startswith("clickhouse_outbox-fill") for name in seen), seen
    entries = list(OutboxEntry.objects.filter(snapshot__in=requests).values_list("snapshot_id", flat=True))
    assert sorted(entries) == sorted(requests)


@pytest.mark.skipif(connection.vendor == "sqlite", reason="SQLite has one writer: it fills in one loop")
def test_one_chunk_or_a_drain_inside_a_transaction_fills_in_the_callers_thread(monkeypatch):
    site()
    requests = [request.pk for request in request_all(registry.get("course_enrollment"))]
    seen = fill_threads_seen(monkeypatch)
    assert requested.take_requested(threads=2) == len(requests)  # one chunk holds them all: no thread
    assert seen == {threading.current_thread().name}

    monkeypatch.setattr(requested, "FILL_CHUNK", 1)
    with transaction.atomic():  # requests no other connection can see yet
        more = [request.pk for request in request_all(registry.get("user_profile"))]
        assert requested.take_requested(threads=2) == len(more)
    assert seen == {threading.current_thread().name}
    assert set(Snapshot.objects.filter(pk__in=more).values_list("status", flat=True)) == {Snapshot.Status.QUEUED}
