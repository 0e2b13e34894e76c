"""
Deletes through the outbox: a retired user's rows and a deleted tag's, taken out of
ClickHouse (the old real server and the current engine) and out of the outbox's own copies,
in order with their inserts, retried like any batch, and shown by outbox_status.
"""

import threading
import uuid

import pytest
from django.db import connection, connections, transaction

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.clickhouse.tables import get_table
from clickhouse_outbox.db import db_now
from clickhouse_outbox.models import Batch, Kind, OutboxEntry, Snapshot
from clickhouse_outbox.operations.status import outbox_status
from clickhouse_outbox.outbox import deletes
from clickhouse_outbox.outbox.claim import claim_batch
from clickhouse_outbox.outbox.drain import drain, drain_until_empty
from clickhouse_outbox.outbox.finalise import mark_sent
from clickhouse_outbox.outbox.send import batch_payload
from clickhouse_outbox.producers.user_profile import PROFILES
from clickhouse_outbox.receivers import user_retired
from clickhouse_outbox.serializers.payloads import GZIP, decompress
from outbox_project.platform.models import UserProfile
from tests.learners import COURSE, enroll, give_external_id, make_learner, queued_rows, tag_object, taxonomy_with_tags

pytestmark = pytest.mark.django_db

#: What of Ada's must be nowhere once she is retired.
ADA_PII = (b"Ada Lovelace", b"Ada King", b"ada@example.com", b'"username":"ada"')


def rows(backend, table, where="1"):
    wait_for_mutations(backend)
    return backend.query(f"SELECT * FROM {qualified_name(backend.database, table)} WHERE {where}")


def wait_for_mutations(backend, timeout=30):
    """The old server applies a delete in the background (the current engine waits for it): wait until it did."""
    import time

    deadline = time.monotonic() + timeout
    sql = f"SELECT count() AS n FROM system.mutations WHERE database = '{backend.database}' AND is_done = 0"
    while int(backend.query(sql)[0]["n"]):
        assert time.monotonic() < deadline, "a ClickHouse mutation did not finish"
        time.sleep(0.05)


def stored_pii(words=ADA_PII):
    """The outbox entries whose payload (decompressed) holds any of `words`."""
    found = []
    for entry in OutboxEntry.objects.all():
        lines = decompress(entry.payload, entry.encoding)
        if any(word in lines for word in words):
            found.append(entry)
    return found


def rename(user, name):
    profile = UserProfile.objects.get(user=user)
    profile.name = name
    profile.save()
    return profile


def test_a_retirement_deletes_the_users_rows_everywhere_and_keeps_the_others(clickhouse):
    ada, grace = make_learner(), make_learner("grace", "Grace Hopper")
    give_external_id(ada)
    give_external_id(grace)
    enroll(ada)
    assert drain().ok  # Ada's profile, external id and enrollment are in ClickHouse
    assert len(rows(clickhouse, "user_profile", f"user_id = {ada.pk}")) == 1

    with transaction.atomic():
        rename(ada, "Ada King")  # queued, unsent...
        user_retired(sender=None, user=ada)  # ...and removed again, in the same transaction

    retirement = Snapshot.objects.get(producer=deletes.RETIREMENT)
    assert (retirement.subject, retirement.user_id, retirement.status) == (str(ada.pk), ada.pk, Snapshot.Status.QUEUED)
    assert sorted(retirement.entries.values_list("table", "kind", "row_count")) == [
        ("external_id", Kind.DELETE, 1), ("user_profile", Kind.DELETE, 1)]
    assert stored_pii() == []  # course_enrollment's usernames too: not in the PII list, but personal data
    assert not Snapshot.objects.filter(user_id=ada.pk, producer__in=["user_profile", "external_id",
                                                                     "course_enrollment"]).exclude(
        status=Snapshot.Status.DELETED).exists()

    result = drain()
    assert result.ok and result.deletes_sent == 2
    assert rows(clickhouse, "user_profile", f"user_id = {ada.pk}") == []
    assert rows(clickhouse, "external_id", f"user_id = {ada.pk}") == []
    assert [row["name"] for row in rows(clickhouse, "user_profile")] == ["Grace Hopper"]
    assert len(rows(clickhouse, "external_id")) == 1
    assert len(rows(clickhouse, "course_enrollment")) == 1  # not in EVENT_SINK_CLICKHOUSE_PII_MODELS: kept there

    rename(ada, "Ada Again")  # the platform saves the scrubbed profile after retiring: nothing of hers is queued
    assert not queued_rows("user_profile", [OutboxEntry.Status.PENDING])
    assert drain().ok and rows(clickhouse, "user_profile", f"user_id = {ada.pk}") == []


def test_the_outbox_keeps_none_of_a_retired_users_data_sent_pending_or_in_a_waiting_batch(server_clickhouse, settings):
    from tests.admin.helpers import refused_drain

    ada = make_learner()
    assert drain().ok  # sent: kept for the retention period...
    rename(ada, "Ada King")
    refused_drain(settings)  # ...waiting to retry after a failure...
    rename(ada, "Ada Byron")  # ...and pending
    assert len(stored_pii()) == 3
    waiting = Batch.objects.get(status=Batch.Status.RETRY)

    user_retired(sender=None, user=ada)

    assert stored_pii() == []
    statuses = set(OutboxEntry.objects.filter(table="user_profile", kind=Kind.INSERT).values_list("status", flat=True))
    assert statuses == {OutboxEntry.Status.REMOVED}
    waiting.refresh_from_db()
    assert (waiting.status, waiting.row_count) == (Batch.Status.RETRY, 0)  # it shrank; its next attempt sends nothing
    Batch.objects.filter(pk=waiting.pk).update(next_attempt_at=db_now())
    result, left = drain_until_empty(timeout=30)
    assert result.ok and result.deletes_sent == 2 and not left["pending_entries"], (result, left)
    assert rows(server_clickhouse, "user_profile", f"user_id = {ada.pk}") == []


def test_a_delete_waits_for_inserts_of_its_table_in_flight_and_goes_before_newer_ones(chdb_clickhouse):
    ada, grace = make_learner(), make_learner("grace", "Grace Hopper")
    held = claim_batch(uuid.uuid4())  # another drainer sends Ada's and Grace's profiles right now
    assert (held.table, held.row_count) == ("user_profile", 2)
    owner = held.lease_owner
    read_before = batch_payload(held)  # that drainer read the rows before Ada retired
    user_retired(sender=None, user=ada)
    rename(grace, "Grace B. Hopper")  # queued after the retirement: waits for the delete too

    result = drain()
    assert result.rows_sent == 0  # the held batch's table is barred until it ends...
    assert result.deletes_sent == 1  # ...not external_id's
    pending = OutboxEntry.objects.filter(kind=Kind.DELETE, status=OutboxEntry.Status.PENDING)
    assert list(pending.values_list("table", flat=True)) == ["user_profile"]

    chdb_clickhouse.insert(get_table("user_profile"), read_before, rows=2, encoding=GZIP)  # its INSERT lands...
    assert mark_sent(held, owner)  # ...and is finalised
    assert len(rows(chdb_clickhouse, "user_profile", f"user_id = {ada.pk}")) == 1

    sent = []
    result = drain()
    assert result.ok and result.deletes_sent == 1
    for batch in Batch.objects.exclude(pk=held.pk).order_by("sent_at", "id"):
        sent.append((batch.table, batch.kind))
    assert sent.index(("user_profile", Kind.DELETE)) < sent.index(("user_profile", Kind.INSERT))
    assert rows(chdb_clickhouse, "user_profile", f"user_id = {ada.pk}") == []
    assert sorted(row["name"] for row in rows(chdb_clickhouse, "user_profile")) == ["Grace B. Hopper", "Grace Hopper"]


def test_a_delete_that_fails_is_retried_like_a_batch_and_shown_until_sent(chdb_clickhouse):
    ada = make_learner()
    assert drain().ok
    chdb_clickhouse.command(f"RENAME TABLE {qualified_name(chdb_clickhouse.database, 'external_id')} "
                            f"TO {qualified_name(chdb_clickhouse.database, 'external_id_gone')}")
    user_retired(sender=None, user=ada)

    result = drain()
    assert result.batches_retrying == 1  # external_id's waits for its table; a run stops at a batch to retry...
    assert drain().deletes_sent == 1  # ...and the next sends user_profile's: an error of one table holds no other
    waiting = Batch.objects.get(status=Batch.Status.RETRY)
    assert (waiting.kind, waiting.table) == (Kind.DELETE, "external_id")
    status = outbox_status()
    assert status.deletes["external_id"]["waiting"] == {"batches": 1, "rows": 1}
    assert status.exit_code(max_age=None) == 1
    assert "waits to retry" in "; ".join(status.problems(None))
    assert "Ada" not in str(status.as_dict(None))

    chdb_clickhouse.command(f"RENAME TABLE {qualified_name(chdb_clickhouse.database, 'external_id_gone')} "
                            f"TO {qualified_name(chdb_clickhouse.database, 'external_id')}")
    Batch.objects.filter(pk=waiting.pk).update(next_attempt_at=db_now())
    assert drain().deletes_sent == 1
    assert outbox_status().exit_code(max_age=None) == 0


def test_a_deleted_tag_leaves_its_table_its_object_tags_are_queued_again_and_its_course_requested(clickhouse):
    _, (science, physics) = taxonomy_with_tags()
    object_tag = tag_object(COURSE, physics)
    assert drain().ok
    physics.value = "Physique"
    physics.save()  # pending when the tag is deleted: never sent
    physics_id = physics.pk
    physics.delete()

    deleted = Snapshot.objects.filter(producer="tag", subject=str(physics_id)).latest("id")
    assert (deleted.reason, list(deleted.entries.values_list("kind", flat=True))) == ("deleted", [Kind.DELETE])
    assert "Physique" not in str(queued_rows("tag"))
    (object_row,) = queued_rows("object_tag", [OutboxEntry.Status.PENDING])
    assert (object_row["id"], object_row["tag"], object_row["_value"]) == (object_tag.pk, 0, "Physics")
    assert Snapshot.objects.filter(producer="course_structure", subject=str(COURSE),
                                   status=Snapshot.Status.REQUESTED).exists()

    drain()
    assert rows(clickhouse, "tag", f"id = {physics_id}") == []
    assert [row["id"] for row in rows(clickhouse, "tag")] == [science.pk]
    latest = rows(clickhouse, "object_tag", f"id = {object_tag.pk} ORDER BY time_last_dumped DESC LIMIT 1")
    assert latest[0]["tag"] == 0


def test_a_deleted_object_tag_is_deleted_and_its_course_requested(clickhouse):
    _, (science,) = taxonomy_with_tags(values=("Science",))
    object_tag = tag_object(COURSE, science)
    assert drain().ok
    object_tag_id = object_tag.pk
    object_tag.delete()
    drain()
    assert rows(clickhouse, "object_tag", f"id = {object_tag_id}") == []
    assert Snapshot.objects.filter(producer="course_structure", subject=str(COURSE)).exists()


def test_a_retired_users_rows_are_never_queued_again_by_a_dump(settings):
    from clickhouse_outbox.dumps.jobs import start_job
    from clickhouse_outbox.dumps.run import run_job
    from clickhouse_outbox.models import DumpJob

    ada, _ = make_learner(), make_learner("grace", "Grace Hopper")
    user_retired(sender=None, user=ada)
    job = run_job(start_job(DumpJob.Scope.ALL, origin="test", producers=["user_profile"]))
    assert job.status == DumpJob.Status.DONE
    # (Grace's own snapshot of her registration is pending too: a chunk supersedes nothing.)
    assert {row["username"] for row in queued_rows("user_profile", [OutboxEntry.Status.PENDING])} == {"grace"}
    # A dump of selected subjects says why one was not queued.
    ada_profile = str(UserProfile.objects.get(user=ada).pk)
    job = run_job(start_job(DumpJob.Scope.SELECTED, origin="test", subjects=[("user_profile", ada_profile)]))
    items = {item.subject: (item.status, item.error) for item in job.items.all()}
    assert items[ada_profile] == ("done", "not queued: its user was retired")


def test_a_retired_users_requested_snapshot_is_deleted_not_taken(settings):
    settings.CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain"
    ada = make_learner()
    rename(ada, "Ada King")
    assert Snapshot.objects.filter(producer="user_profile", status=Snapshot.Status.REQUESTED).count() >= 1
    user_retired(sender=None, user=ada)
    from clickhouse_outbox.outbox.requested import take_requested

    take_requested()
    assert not Snapshot.objects.filter(producer="user_profile", status=Snapshot.Status.QUEUED).exists()
    assert stored_pii() == []


@pytest.mark.django_db(transaction=True)
def test_rows_a_concurrent_transaction_wrote_for_a_retired_user_are_removed_when_the_delete_is_claimed(chdb_clickhouse):
    """
    A dump's transaction that checked for retirements before the retirement committed, and
    commits after it, leaves the user's rows pending: claiming the delete removes them.
    """
    if connection.vendor == "sqlite":
        pytest.skip("SQLite runs one write transaction at a time: the two cannot overlap")
    from clickhouse_outbox.db import db_now as now
    from clickhouse_outbox.outbox.enqueue import enqueue

    ada = make_learner()
    OutboxEntry.objects.all().delete()
    Snapshot.objects.all().delete()
    prepared = PROFILES.prepare([str(UserProfile.objects.get(user=ada).pk)], now=now())
    checked, retired = threading.Event(), threading.Event()

    def dump_transaction():
        try:
            with transaction.atomic():
                original = deletes.retired

                def retired_then_wait(users):
                    found = original(users)  # nobody retired yet, as this transaction sees it
                    checked.set()
                    assert retired.wait(10)
                    return found

                deletes.retired = retired_then_wait
                try:
                    enqueue(PROFILES, prepared, reason="dump")
                finally:
                    deletes.retired = original
        finally:
            connections.close_all()

    thread = threading.Thread(target=dump_transaction)
    thread.start()
    assert checked.wait(10)
    user_retired(sender=None, user=ada)  # commits while the dump's transaction is still open
    retired.set()
    thread.join(20)
    assert len(stored_pii()) == 1  # the dump's row, written after the retirement

    drain()
    assert stored_pii() == []
    assert rows(chdb_clickhouse, "user_profile") == []
