"""
outbox_drain's exit status is about delivery (see EXIT_STATUS in its module): 0 when this
run sent what was due and no batch failed or waits after an error; 1 when this run could
not send a batch, lost one to another drainer or could not read a requested snapshot, or a
failed (or erring) batch is in the outbox, or --until-empty gave up; 2 when what waits is
older than --max-age. What a verification found, and subjects the source could not read
before the run, are outbox_status's and outbox_verify's to report: a drain that sent
everything exits 0 whatever they say.

(The other cases, ClickHouse down, a batch waiting after a missing table, stale rows,
--until-empty giving up, are in tests/commands/test_status.py and tests/commands/test_commands.py.)
"""

import io
import shutil
import threading
import time
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from clickhouse_outbox.clickhouse.backends import build_backend
from clickhouse_outbox.db import db_now
from clickhouse_outbox.management.commands.outbox_drain import EXIT_STATUS, Command
from clickhouse_outbox.models import Batch, OutboxEntry, Snapshot
from clickhouse_outbox.outbox.drain import drain
from clickhouse_outbox.receivers import course_published
from clickhouse_outbox.sources.olx import folder_name
from tests.commands.test_status import age_rows, command
from tests.factories import BatchFactory, CourseSnapshotFactory
from tests.proxy import FaultProxy
from tests.reconcile.helpers import delete_rows, publish_courses

pytestmark = pytest.mark.django_db


def test_every_exit_status_is_said_in_the_help():
    assert set(EXIT_STATUS) == {0, 1, 2}
    shown = " ".join(Command.help.split())
    assert all(f"{code} {meaning}" in shown for code, meaning in EXIT_STATUS.items())


def test_a_drain_that_sends_everything_exits_0_whatever_the_last_verification_found(
    olx_source, tmp_path, chdb_clickhouse
):
    kept, lost = publish_courses(olx_source, tmp_path / "exports", 2)
    delete_rows(chdb_clickhouse, "course_blocks", f"course_key = '{lost}'")
    verified = command("outbox_verify", "--producer", "course_structure")
    assert verified.code == 1 and "1 subject differs" in verified.message, verified.out
    course_published(sender=None, course_key=kept)  # something new to send

    drained = command("outbox_drain")

    assert drained.code == 0, drained.message
    assert "Drained: 3 batches" in drained.out and not OutboxEntry.objects.filter(status="pending").exists()
    # The verification's finding is reported where it belongs, as long as it is not repaired.
    status = command("outbox_status")
    assert status.code == 1 and "1 subject differs in ClickHouse from what was delivered" in status.message
    assert command("outbox_verify", "--producer", "course_structure").code == 1


def test_a_subject_the_source_could_not_read_before_the_drain_is_not_the_drains_failure(olx_dir, chdb_clickhouse):
    course_published(sender=None, course_key="course-v1:ExitX+Gone+2026")  # the source does not know it
    assert Snapshot.objects.get().status == Snapshot.Status.FAILED

    drained = command("outbox_drain")

    assert drained.code == 0, drained.message
    status = command("outbox_status")
    assert status.code == 1 and "1 course could not be read (course-v1:ExitX+Gone+2026)" in status.message


def test_a_failed_batch_in_the_outbox_makes_the_drain_exit_1_for_as_long_as_it_stays(chdb_clickhouse):
    batch = BatchFactory()  # failed for good in an earlier run

    drained = command("outbox_drain")

    assert drained.code == 1
    assert drained.message == "1 batch (0 rows) failed: retry them in the admin or with outbox_requeue --failed"
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.SENT, sent_at=db_now())
    assert command("outbox_drain").code == 0


def test_a_requested_snapshot_the_drain_could_not_read_makes_it_exit_1(sample_course_key, olx_dir, tmp_path,
                                                                       chdb_clickhouse, settings):
    settings.CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain"
    course_published(sender=None, course_key=sample_course_key)
    moved = tmp_path / "away"
    shutil.move(olx_dir / folder_name(sample_course_key), moved)  # gone when the drain reads it

    drained = command("outbox_drain")

    assert drained.code == 1
    assert drained.message.startswith("1 requested snapshot could not be taken (errors above): outbox_requeue "
                                      "--failed takes them again")
    assert f"  {sample_course_key}: " in drained.err and "(the requested course_structure snapshot" in drained.err
    shutil.move(moved, olx_dir / folder_name(sample_course_key))
    assert command("outbox_requeue", "--failed").code == 0
    assert command("outbox_drain").code == 0


HOLD = 3  # seconds the proxy holds ClickHouse's answer to the first drainer: longer than the lease


@pytest.mark.clickhouse_server
@pytest.mark.django_db(transaction=True)
def test_a_batch_lost_to_another_drainer_makes_the_drain_exit_1(server_clickhouse, settings):
    """
    A drainer whose answer from ClickHouse comes after its lease ran out: another drainer
    took the batch and sent it. The first one's run lost it (a real slow answer, held by a
    proxy in front of the real server; the other drainer talks to the server directly).
    """
    settings.CLICKHOUSE_OUTBOX_LEASE_SECS = 1
    direct = build_backend(settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG)
    CourseSnapshotFactory(course__blocks=3)
    with FaultProxy(settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG["url"], match=b"INSERT") as proxy:
        proxy.delay_response(HOLD)
        settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG,
                                                             url=proxy.url)
        outcome = {}

        def first_drainer():
            try:
                outcome["drain"] = command("outbox_drain", "--max-batches", "1")
            finally:
                connection.close()

        thread = threading.Thread(target=first_drainer)
        thread.start()
        deadline = time.monotonic() + 30
        while not Batch.objects.filter(status=Batch.Status.CLAIMED, lease_expires_at__lt=db_now()).exists():
            assert time.monotonic() < deadline and thread.is_alive(), "the first drainer never held a batch"
            time.sleep(0.05)
        second = drain(max_batches=1, backend=direct)  # takes the batch whose lease ran out
        thread.join(timeout=60)
    assert second.batches_sent == 1, second
    drained = outcome["drain"]
    assert drained.code == 1
    assert drained.message.startswith("this run could not send everything (0 batches (0 rows) sent, 1 batch lost "
                                      "to another drainer;")
    direct.close()


def test_stale_rows_make_it_exit_2_before_anything_else(chdb_clickhouse):
    BatchFactory()
    CourseSnapshotFactory(course__blocks=3)
    age_rows(3600)
    drained = command("outbox_drain", "--max-batches", "1", "--max-age", "600")
    assert drained.code == 2
    assert drained.message.startswith("the oldest unsent row has waited")
    assert "1 batch (0 rows) failed" in drained.message


def test_an_error_of_the_command_itself_exits_1(chdb_clickhouse, settings):
    """The purge after the drain needs the cache; without its table the command fails, saying what to do."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache",
                                   "LOCATION": f"no_such_table_{uuid.uuid4().hex[:8]}"}}
    with pytest.raises(CommandError) as failure:
        call_command("outbox_drain", stdout=io.StringIO(), stderr=io.StringIO())
    assert failure.value.returncode == 1
    assert "manage.py createcachetable" in str(failure.value)
