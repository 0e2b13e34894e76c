"""
A learner change in the platform's transaction (decision record 0015): one statement of the
plugin's per change where the snapshot and its entry go in one round trip (PostgreSQL,
MySQL/MariaDB), two on SQLite (counted with `connection.execute_wrapper`, the producers on
against off), a row changed several times in one transaction queued once, a
savepoint that rolls back taking its row out of the memo, and a retired user's rows neither
queued nor sent, however the change and the retirement interleave. Every database.
"""

import contextlib

import pytest
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection, transaction
from django.db.models import Count

from clickhouse_outbox.models import OutboxEntry, Snapshot
from clickhouse_outbox.outbox import changes, row_inserts
from clickhouse_outbox.outbox.drain import drain
from clickhouse_outbox.receivers import user_retired
from outbox_project.platform.models import CourseEnrollment, ExternalId, ExternalIdType, UserProfile
from openedx_events.learning.signals import COURSE_ENROLLMENT_CHANGED, COURSE_ENROLLMENT_CREATED

from tests.learners import COURSE, change_enrollment, enroll, event_data, make_learner, queued_rows

pytestmark = pytest.mark.django_db

PRODUCERS = ("course_enrollment", "user_profile", "external_id")


class Counter:
    def __init__(self):
        self.statements = []

    def __call__(self, execute, sql, params, many, context):
        self.statements.append(sql)
        return execute(sql, params, many, context)


def producers_on(settings, on):
    for name in PRODUCERS:
        setattr(settings, f"CLICKHOUSE_OUTBOX_{name.upper()}_ENABLED", on)


def save_profile(user):
    profile = user.profile
    profile.city = "Paris" if profile.city != "Paris" else "Lyon"
    profile.save()


def change_email(user):
    user.email = f"new-{user.email}"
    user.save()


CHANGES = {
    "enrollment": lambda user, id_type: enroll(user),
    "mode change": lambda user, id_type: change_enrollment(CourseEnrollment.objects.get(user=user, course_id=COURSE),
                                                           mode="verified"),
    "profile": lambda user, id_type: save_profile(user),
    "email": lambda user, id_type: change_email(user),
    "external id": lambda user, id_type: ExternalId.objects.create(user=user, external_id_type=id_type),
}


def counted(change, users, id_type):
    """The statements of `change` for each user, each in a transaction of its own (a request)."""
    counts = []
    for user in users:
        counter = Counter()
        with connection.execute_wrapper(counter), transaction.atomic():
            change(user, id_type)
        counts.append(len(counter.statements))
    return counts


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("snapshot_at", ["publish", "drain"])
def test_a_learner_change_adds_one_statement_to_its_transaction_two_on_sqlite(settings, snapshot_at):
    settings.CLICKHOUSE_OUTBOX_SNAPSHOT_AT = snapshot_at
    producers_on(settings, True)
    id_type = ExternalIdType.objects.create(name="lti")
    users = {side: [make_learner(f"{side}{index}", f"Learner {side}{index}") for index in range(3)]
             for side in ("on", "off")}
    users = {side: list(get_user_model().objects.filter(pk__in=[user.pk for user in group]).select_related("profile")
                        .order_by("pk")) for side, group in users.items()}
    added = {}
    for name, change in CHANGES.items():
        producers_on(settings, False)
        platform = counted(change, users["off"], id_type)
        producers_on(settings, True)
        with_plugin = counted(change, users["on"], id_type)
        added[name] = max(on - off for on, off in zip(with_plugin, platform, strict=True))
    # One round trip for the snapshot and its entry (a request alone in deferred mode); where an
    # INSERT cannot return the database's time (MySQL), one more: the time, once per transaction.
    one = snapshot_at == "drain" or (row_inserts.one_trip(connection) and not row_inserts.needs_time(connection))
    assert all(count <= (1 if one else 2) for count in added.values()), added
    assert added["enrollment"] >= 1 and added["profile"] >= 1  # the rows were queued at all
    queued = Snapshot.objects.filter(producer__in=PRODUCERS, user_id__in=[user.pk for user in users["on"]])
    assert queued.filter(producer="course_enrollment").count() == 6  # created, then mode changed: per user
    assert not Snapshot.objects.filter(user_id__in=[user.pk for user in users["off"]]).exclude(
        producer="user_profile").exists()


def test_an_enrollment_saved_twice_and_announced_twice_in_one_transaction_is_queued_once():
    user = make_learner()
    counter = Counter()
    with connection.execute_wrapper(counter), transaction.atomic():
        enrollment = enroll(user)  # get_or_create (a savepoint), save(), CHANGED, CREATED
        change_enrollment(enrollment, mode="verified")  # save(), CHANGED: the queued entry rewritten
    plugin = [sql for sql in counter.statements if "clickhouse_outbox" in sql]
    # The snapshot and its entry (one statement where they go in one round trip), one UPDATE.
    assert len(plugin) == (2 if row_inserts.one_trip(connection) else 3), plugin
    (snapshot,) = Snapshot.objects.filter(producer="course_enrollment")
    assert [row["mode"] for row in queued_rows("course_enrollment")] == ["verified"]
    assert queued_rows("course_enrollment")[0]["dump_id"] == str(snapshot.dump_id)


def test_a_savepoint_that_rolls_back_takes_its_row_out_of_the_memo():
    user = make_learner()
    with transaction.atomic():
        with pytest.raises(RuntimeError), transaction.atomic():
            enroll(user)
            raise RuntimeError("the enrollment fails after its row was queued")
        assert not Snapshot.objects.filter(producer="course_enrollment").exists()
        enrollment = enroll(user)  # the same row again: the memo must not claim it is queued
    (row,) = queued_rows("course_enrollment")
    assert row["id"] == enrollment.pk


def test_the_event_after_a_savepoint_that_took_the_queued_row_back_queues_it_again():
    """
    The second event after one save adds nothing only while what the first queued is still
    there: here the first was sent in a savepoint that rolled back.
    """
    user = make_learner()
    with transaction.atomic():
        enrollment, _ = CourseEnrollment.objects.get_or_create(user=user, course_id=COURSE,
                                                               defaults={"mode": "audit", "is_active": False})
        enrollment.is_active = True
        enrollment.save()
        with pytest.raises(RuntimeError), transaction.atomic():
            COURSE_ENROLLMENT_CHANGED.send_event(enrollment=event_data(enrollment))
            assert Snapshot.objects.filter(producer="course_enrollment").exists()
            raise RuntimeError("the step after the event fails")
        COURSE_ENROLLMENT_CREATED.send_event(enrollment=event_data(enrollment))
    (row,) = queued_rows("course_enrollment")
    assert (row["id"], row["is_active"]) == (enrollment.pk, True)


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_leaves_nothing_in_the_memo():
    user = make_learner()
    with pytest.raises(RuntimeError), transaction.atomic():
        enroll(user)
        raise RuntimeError
    with transaction.atomic():
        enrollment = enroll(user)
    assert [row["id"] for row in queued_rows("course_enrollment")] == [enrollment.pk]


def test_after_a_retirement_nothing_of_the_user_is_queued(clickhouse):
    user = make_learner()
    user_retired(sender=None, user=user)
    profile = UserProfile.objects.get(user=user)
    profile.name = ""  # the retirement pipeline blanks the profile: saved after the retirement
    profile.save()
    enroll(user)
    assert not OutboxEntry.objects.filter(snapshot__user_id=user.pk, kind="insert").exclude(
        status=OutboxEntry.Status.REMOVED).exists()
    assert not Snapshot.objects.filter(user_id=user.pk, producer__in=PRODUCERS, status=Snapshot.Status.QUEUED).exists()


def test_rows_queued_by_a_change_that_raced_a_retirement_are_removed_when_claimed_never_sent(clickhouse):
    ada, grace = make_learner(), make_learner("grace", "Grace Hopper")
    enroll(ada)
    enroll(grace)
    # The change committed after the retirement had removed the user's rows (its transaction
    # began first): its rows are pending, and the ledger says the user is retired.
    Snapshot.objects.create(producer="user_retirement", subject=str(ada.pk), user_id=ada.pk, reason="retired")
    result = drain()
    assert result.ok
    for table in ("course_enrollment", "user_profile"):
        sent = clickhouse.query(f"SELECT user_id FROM `{clickhouse.database}`.{table}")
        assert [row["user_id"] for row in sent] == [grace.pk], table
    removed = OutboxEntry.objects.filter(snapshot__user_id=ada.pk, kind="insert")
    assert set(removed.values_list("status", flat=True)) == {OutboxEntry.Status.REMOVED}
    assert set(removed.values_list("payload", flat=True)) == {b""}


@pytest.mark.django_db(transaction=True)
def test_a_deferred_change_is_one_request_filled_and_sent_by_the_drain(settings, clickhouse):
    settings.CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain"
    user = make_learner()
    with transaction.atomic():
        enrollment = enroll(user)
        change_enrollment(enrollment, mode="verified")
    (request,) = Snapshot.objects.filter(producer="course_enrollment")
    assert (request.status, request.user_id) == (Snapshot.Status.REQUESTED, user.pk)
    assert drain().ok
    request.refresh_from_db()
    assert request.status == Snapshot.Status.QUEUED
    rows = clickhouse.query(f"SELECT mode, dump_id FROM `{clickhouse.database}`.course_enrollment")
    assert [(row["mode"], row["dump_id"]) for row in rows] == [("verified", str(request.dump_id))]


def test_the_drain_fills_the_newest_request_of_each_row_and_none_of_a_retired_user(settings, clickhouse):
    settings.CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain"
    ada, grace = make_learner(), make_learner("grace", "Grace Hopper")
    profile = UserProfile.objects.get(user=grace)
    for city in ("Paris", "Lyon"):
        changes.forget()  # each its own request
        profile.city = city
        profile.save()
    gone = enroll(ada)
    Snapshot.objects.create(producer="user_retirement", subject=str(ada.pk), user_id=ada.pk, reason="retired")
    ghost = Snapshot.objects.create(producer="user_profile", subject="999999", status=Snapshot.Status.REQUESTED)
    assert Snapshot.objects.filter(producer="user_profile", user_id=grace.pk,
                                   status=Snapshot.Status.REQUESTED).count() == 3  # made, then saved twice

    result = drain()  # the ghost's request fails (no such profile); the others are sent
    assert [error for error in result.errors if "no such user profile" in error] == result.errors != []
    statuses = dict(Snapshot.objects.filter(producer="user_profile", user_id=grace.pk)
                    .values_list("status").annotate(n=Count("id")))
    assert statuses == {Snapshot.Status.SUPERSEDED: 2, Snapshot.Status.QUEUED: 1}
    (sent,) = clickhouse.query(f"SELECT city, dump_id FROM `{clickhouse.database}`.user_profile")
    filled = Snapshot.objects.get(producer="user_profile", user_id=grace.pk, status=Snapshot.Status.QUEUED)
    assert (sent["city"], sent["dump_id"]) == ("Lyon", str(filled.dump_id))
    assert Snapshot.objects.get(producer="course_enrollment", subject=str(gone.pk)).status == Snapshot.Status.DELETED
    assert not clickhouse.query(f"SELECT id FROM `{clickhouse.database}`.course_enrollment")
    ghost.refresh_from_db()
    assert ghost.status == Snapshot.Status.FAILED and "no such user profile" in ghost.error


# -- the snapshot and its entry in one round trip ----------------------------------------------


def test_each_queued_line_is_the_serializers_to_the_byte_with_its_snapshots_time_and_digest():
    """
    Where the database joins the line around the time it stores (one round trip), the entry holds
    the bytes the serializer gives with the snapshot's dump_id and time: non-ASCII, quotes,
    backslashes and control characters included; the snapshot's digest is the row's.
    """
    from clickhouse_outbox.outbox.unchanged import row_digest  # noqa: PLC0415
    from clickhouse_outbox.producers.course_enrollment import ENROLLMENTS  # noqa: PLC0415
    from clickhouse_outbox.producers.external_id import EXTERNAL_IDS  # noqa: PLC0415
    from clickhouse_outbox.producers.user_profile import PROFILES  # noqa: PLC0415

    user = make_learner("zoë", 'Zoë "Z" \\ Ω 漢字\x01\n')
    id_type = ExternalIdType.objects.create(name="lti")
    with transaction.atomic():
        enrollment = enroll(user)
        external_id = ExternalId.objects.create(user=user, external_id_type=id_type)
        profile = UserProfile.objects.get(user=user)
        profile.city = "Zürich\t"
        profile.save()
    for producer, instance in ((ENROLLMENTS, enrollment), (EXTERNAL_IDS, external_id), (PROFILES, profile)):
        instance = producer.queryset().get(pk=instance.pk)
        snapshot = Snapshot.objects.filter(producer=producer.name, subject=str(instance.pk)).latest("id")
        (entry,) = OutboxEntry.objects.filter(snapshot=snapshot)
        assert bytes(entry.payload) == producer.serialize(instance, dump_id=snapshot.dump_id,
                                                          time_last_dumped=snapshot.time_last_dumped), producer.name
        assert (entry.status, entry.kind, entry.row_count, entry.encoding, entry.table) == (
            OutboxEntry.Status.PENDING, "insert", 1, "", producer.table.name)
        emptied = producer.serialize(instance, dump_id="", time_last_dumped="")
        if producer is not PROFILES:  # the profile changed again in the transaction: its first content's digest
            assert snapshot.digest == row_digest(producer.table.name, emptied), producer.name


REFUSE_ENTRIES = {
    "postgresql": [
        "CREATE FUNCTION ch_test_refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'entry refused'; END $$ "
        "LANGUAGE plpgsql",
        "CREATE TRIGGER ch_test_refuse BEFORE INSERT ON clickhouse_outbox_outboxentry FOR EACH ROW "
        "EXECUTE FUNCTION ch_test_refuse()",
    ],
    "mysql": ["CREATE TRIGGER ch_test_refuse BEFORE INSERT ON clickhouse_outbox_outboxentry FOR EACH ROW "
              "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'entry refused'"],
    "sqlite": ["CREATE TRIGGER ch_test_refuse BEFORE INSERT ON clickhouse_outbox_outboxentry "
               "BEGIN SELECT RAISE(ABORT, 'entry refused'); END"],
}
ALLOW_ENTRIES = {
    "postgresql": ["DROP TRIGGER ch_test_refuse ON clickhouse_outbox_outboxentry", "DROP FUNCTION ch_test_refuse()"],
    "mysql": ["DROP TRIGGER ch_test_refuse"],
    "sqlite": ["DROP TRIGGER ch_test_refuse"],
}


@contextlib.contextmanager
def entries_refused():
    """A trigger that makes the database refuse every INSERT of an entry (a real error of the statement)."""
    with connection.cursor() as cursor:
        for sql in REFUSE_ENTRIES[connection.vendor]:
            cursor.execute(sql)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for sql in ALLOW_ENTRIES[connection.vendor]:
                cursor.execute(sql)


@pytest.mark.django_db(transaction=True)
def test_an_entry_the_database_refuses_fails_the_change_and_leaves_no_snapshot_without_its_entry():
    """
    The entry's INSERT failing (with mysqlclient the second statement of the query, whose error
    only `nextset()` reads) fails the change whose signal raises (a profile saved: the platform's
    transaction rolls back). openedx-events sends the enrollment events with `send_robust`, which
    logs the error and lets the transaction commit: its snapshot is withdrawn, so none is left
    without its entry (on PostgreSQL the failed statement took the transaction with it). The
    connection goes on serving the next change.
    """
    ada, grace = make_learner(), make_learner("grace", "Grace Hopper")
    Snapshot.objects.all().delete()
    with entries_refused():
        with pytest.raises(DatabaseError, match="entry refused"), transaction.atomic():
            save_profile(ada)
        with transaction.atomic():
            enroll(ada)
    assert UserProfile.objects.get(user=ada).city != "Paris"  # the profile's change rolled back with its row
    assert not Snapshot.objects.filter(entries__isnull=True).exists()
    assert not OutboxEntry.objects.exists()
    with transaction.atomic():
        enrollment = enroll(grace)
    assert [row["id"] for row in queued_rows("course_enrollment")] == [enrollment.pk]
    assert Snapshot.objects.get().entries.count() == 1


@pytest.mark.django_db(transaction=True)
def test_without_returning_each_entry_is_its_own_snapshots_and_a_retired_users_queues_nothing(monkeypatch):
    """
    MySQL (8.4 has no INSERT ... RETURNING; MariaDB's is turned off here): the ids come from the
    cursor, the time from one read of the clock per transaction. A retired user's snapshot is not
    inserted: the next statement must not take an earlier row's id for it (LAST_INSERT_ID() keeps
    the last insert's), so no entry is written, and the next user's entry names its own snapshot.
    """
    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL always returns columns from an INSERT")
    monkeypatch.setattr(connection.features, "can_return_columns_from_insert", False)
    ada, bob, grace = make_learner(), make_learner("bob", "Bob"), make_learner("grace", "Grace Hopper")
    user_retired(sender=None, user=bob)
    counter = Counter()
    with connection.execute_wrapper(counter), transaction.atomic():
        enrollments = {user.pk: enroll(user) for user in (ada, bob, grace)}
    clock = [sql for sql in counter.statements if "UTC_TIMESTAMP" in sql and sql.lstrip().upper().startswith("SELECT")]
    assert len(clock) == (1 if connection.vendor == "mysql" else 0)
    snapshots = Snapshot.objects.filter(producer="course_enrollment").order_by("id")
    assert [snapshot.user_id for snapshot in snapshots] == [ada.pk, grace.pk]
    assert len({snapshot.time_last_dumped for snapshot in snapshots}) == 1  # the transaction's time
    from clickhouse_outbox.producers.course_enrollment import ENROLLMENTS  # noqa: PLC0415

    for snapshot in snapshots:
        (entry,) = OutboxEntry.objects.filter(snapshot=snapshot)
        instance = ENROLLMENTS.queryset().get(pk=enrollments[snapshot.user_id].pk)
        assert bytes(entry.payload) == ENROLLMENTS.serialize(instance, dump_id=snapshot.dump_id,
                                                             time_last_dumped=snapshot.time_last_dumped)
    assert OutboxEntry.objects.filter(table="course_enrollment").count() == 2


@pytest.mark.django_db(transaction=True)
def test_the_queue_row_function_comes_and_goes_with_its_migration_on_postgresql():
    from django.core.management import call_command  # noqa: PLC0415

    if connection.vendor != "postgresql":
        pytest.skip("the function is PostgreSQL's (migration 0013 does nothing elsewhere)")

    def exists():
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_proc WHERE proname = %s", [row_inserts.QUEUE_ROW_FUNCTION])
            return cursor.fetchone()[0] == 1

    assert exists()
    call_command("migrate", "clickhouse_outbox", "0012", verbosity=0)
    try:
        assert not exists()
    finally:
        call_command("migrate", "clickhouse_outbox", verbosity=0)
    assert exists()
    with transaction.atomic():
        enrollment = enroll(make_learner())
    assert [row["id"] for row in queued_rows("course_enrollment")] == [enrollment.pk]


def test_with_multi_statements_off_mysql_sends_the_two_inserts_one_after_the_other(monkeypatch):
    """OPTIONS {"multi_statements": False} (or PyMySQL): the snapshot and its entry as two statements, the same rows."""
    if connection.vendor != "mysql":
        pytest.skip("a setting of mysqlclient's")
    monkeypatch.setitem(connection.settings_dict, "OPTIONS", {**connection.settings_dict["OPTIONS"],
                                                               "multi_statements": False})
    assert not row_inserts.one_trip(connection)
    user = make_learner()
    counter = Counter()
    with connection.execute_wrapper(counter), transaction.atomic():
        enrollment = enroll(user)
    assert len([sql for sql in counter.statements if "clickhouse_outbox" in sql]) == 2
    assert not any(";" in sql for sql in counter.statements)
    from clickhouse_outbox.producers.course_enrollment import ENROLLMENTS  # noqa: PLC0415

    snapshot = Snapshot.objects.get(producer="course_enrollment")
    (entry,) = OutboxEntry.objects.filter(snapshot=snapshot)
    assert bytes(entry.payload) == ENROLLMENTS.serialize(ENROLLMENTS.queryset().get(pk=enrollment.pk),
                                                         dump_id=snapshot.dump_id,
                                                         time_last_dumped=snapshot.time_last_dumped)
