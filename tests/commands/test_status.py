"""
manage.py outbox_status: 0 healthy; 1 failed batches, courses that could not be read,
ClickHouse failing, or a verification's unrepaired finding (for as long as that lasts); 2 the
oldest unsent row is older than --max-age (before 1). And outbox_drain's delivery cases, the
part of that status about the batches and the age of what waits (the rest of its statuses:
tests/commands/test_drain_exit_status.py). On real outbox rows, a real ClickHouse (the 18.16 server
and chdb) and, for the exit statuses themselves, `manage.py` in another process.
"""

import io
import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from django.core.management import CommandError, call_command

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.clickhouse.errors import ClickHouseError
from clickhouse_outbox.db import db_now
from clickhouse_outbox.models import Batch, OutboxEntry, Snapshot
from clickhouse_outbox.outbox.claim import claim_batch
from clickhouse_outbox.outbox.finalise import mark_failed
from clickhouse_outbox.producers.course_structure import snapshot_or_record_failure
from clickhouse_outbox.sources.olx import SAMPLE_COURSE_DIR, OlxFolderSource, folder_name
from clickhouse_outbox.testing.generator import write_course_export
from clickhouse_outbox.text import last_line
from tests.factories import BatchFactory, CourseSnapshotFactory
from tests.processes import ROOT, project_env

pytestmark = pytest.mark.django_db

DOWN = {"url": "http://127.0.0.1:9", "connect_timeout_secs": 1}  # nothing listens on the discard port
JSON_KEYS = {"exit_code", "problems", "checked_at", "tables", "totals", "failed_batches", "oldest_unsent_at",
             "oldest_unsent_age_seconds", "max_age_seconds", "last_sent_at", "failed_snapshots",
             "server_failure", "retrying", "dump_job", "requested_snapshots", "deletes", "delete_totals",
             "producers", "differing", "last_verified_at"}


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    message: str  # the CommandError's: what manage.py prints to stderr before it exits with `code`


def command(name, *args):
    """Run a command as call_command does; its exit status is the CommandError's returncode (0 if none)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(name, *args, stdout=out, stderr=err)
    except CommandError as exc:
        return Outcome(exc.returncode, out.getvalue(), err.getvalue(), str(exc))
    return Outcome(0, out.getvalue(), err.getvalue(), "")


def status(*args):
    return command("outbox_status", *args)


def status_json(*args):
    outcome = status("--json", *args)
    report = json.loads(outcome.out)
    assert report["exit_code"] == outcome.code
    return report


def age_rows(seconds):
    """Make every outbox row look queued `seconds` ago, by the database's clock."""
    then = db_now() - timedelta(seconds=seconds)
    OutboxEntry.objects.update(created=then)
    Batch.objects.update(created=then)


def count(backend, table):
    return int(backend.query(f"SELECT count() AS n FROM {qualified_name(backend.database, table)}")[0]["n"])


def rows_per_state(text, table):
    """The {state: rows} a text report shows in `table`'s line."""
    line = next(line for line in text.splitlines() if line.split()[:1] == [table])
    pending, sending, waiting, failed = (int(n.replace(",", "")) for n in line.split()[1:])
    return {"pending": pending, "sending": sending, "waiting": waiting, "failed": failed}


def break_course(olx_dir, key):
    """The export stays in the folder but cannot be read (as after a bad copy)."""
    (olx_dir / folder_name(key) / "course.xml").write_text("<course url_name=")


# --- outbox_status: what it reports ------------------------------------------------------


def test_an_empty_outbox_is_healthy():
    outcome = status()
    assert outcome.code == 0 and outcome.message == ""
    assert "healthy (exit status 0)" in outcome.out
    assert "Oldest unsent row: none" in outcome.out
    assert "Last successful send: never" in outcome.out
    assert "Failed batches: 0" in outcome.out
    assert "Subjects that could not be read: 0" in outcome.out
    report = status_json()
    assert report["exit_code"] == 0 and report["problems"] == []
    assert report["tables"] == {} and report["totals"] == {"pending": 0, "sending": 0, "waiting": 0, "failed": 0}
    assert report["oldest_unsent_at"] is None and report["last_sent_at"] is None


def test_pending_rows_younger_than_max_age_are_healthy():
    snapshot = CourseSnapshotFactory()
    outcome = status()
    assert outcome.code == 0, outcome.message
    assert "healthy (exit status 0)" in outcome.out
    assert "Oldest unsent row: queued" in outcome.out and "(allowed: 15 min)" in outcome.out  # 900 s by default
    report = status_json()
    assert report["totals"]["pending"] == snapshot.row_count
    assert report["oldest_unsent_at"] is not None and report["max_age_seconds"] == 900


def test_rows_per_table_are_counted_in_each_state():
    first = CourseSnapshotFactory()
    rows = dict(first.entries.values_list("table", "row_count"))
    assert len(rows) == 3
    sending = claim_batch(uuid.uuid4())  # one table's entries, leased to a drainer that is sending them
    owner = uuid.uuid4()
    waiting = claim_batch(owner)  # another table's, waiting out a backoff after an error of its own
    assert mark_failed(waiting, owner, ClickHouseError("Code: 60. Table does not exist")) == Batch.Status.RETRY
    (left,) = set(rows) - {sending.table, waiting.table}
    BatchFactory(table=sending.table, row_count=7)  # ran out of attempts
    BatchFactory(table=sending.table, row_count=5, status=Batch.Status.SENT)  # sent: in no state counted
    second = CourseSnapshotFactory()  # pending in every table
    more = dict(second.entries.values_list("table", "row_count"))
    expected = {
        sending.table: {"pending": more[sending.table], "sending": rows[sending.table], "waiting": 0, "failed": 7},
        waiting.table: {"pending": more[waiting.table], "sending": 0, "waiting": rows[waiting.table], "failed": 0},
        left: {"pending": rows[left] + more[left], "sending": 0, "waiting": 0, "failed": 0},
    }

    outcome = status()
    assert outcome.code == 1  # the failed batch
    for table, states in expected.items():
        assert rows_per_state(outcome.out, table) == states, table
    totals = {state: sum(states[state] for states in expected.values()) for state in expected[left]}
    assert rows_per_state(outcome.out, "total") == totals
    assert "Failed batches: 1" in outcome.out
    assert "1 batch (7 rows) failed: retry them in the admin or with outbox_requeue --failed" in outcome.message

    report = status_json()
    assert report["totals"] == totals and report["failed_batches"] == 1
    assert {table: {state: counts["rows"] for state, counts in states.items()}
            for table, states in report["tables"].items()} == {
        table: {state: n for state, n in states.items() if n} for table, states in expected.items()
    }
    assert report["tables"][left]["pending"]["entries"] == 2
    assert report["tables"][sending.table]["sending"]["batches"] == 1
    assert report["tables"][waiting.table]["waiting"]["batches"] == 1
    assert report["tables"][sending.table]["failed"]["batches"] == 1
    assert report["server_failure"] is None  # an error of the batch's own is not ClickHouse failing


def test_a_failed_batch_needs_attention_until_it_is_retried_and_sent(olx_dir, clickhouse):
    call_command("outbox_load_olx", str(SAMPLE_COURSE_DIR), stdout=io.StringIO())
    entry = OutboxEntry.objects.get(table="course_overviews")
    good = entry.lines()
    OutboxEntry.objects.filter(pk=entry.pk).update(payload=good.replace(b'"dump_id":"', b'"dump_id":"x'), encoding="")

    first = command("outbox_drain")  # ClickHouse rejects the row: the batch fails for good
    assert first.code == 1
    assert first.message.startswith("this run could not send everything")
    assert Batch.objects.get(table="course_overviews").status == Batch.Status.FAILED
    # Every later run has nothing to send, and still exits 1 (it used to exit 0 from the second run on).
    for _ in range(2):
        later = command("outbox_drain")
        assert later.code == 1, later.out
        assert "0 batches (0 rows) sent" in later.out
        assert later.message == ("1 batch (1 row) failed: retry them in the admin or with outbox_requeue --failed")
        report = status()
        assert report.code == 1
        assert "needs attention (exit status 1)" in report.out and "Failed batches: 1" in report.out
        assert rows_per_state(report.out, "course_overviews")["failed"] == 1

    OutboxEntry.objects.filter(pk=entry.pk).update(payload=good, encoding="")  # the cause is fixed
    assert command("outbox_requeue", "--failed").out.startswith("1 failed or waiting batch made due now.")
    assert status().code == 0  # due now, young: nothing to report while it waits for the drain
    sent = command("outbox_drain")
    assert sent.code == 0, sent.message
    assert "1 batch (1 row) sent" in sent.out
    assert count(clickhouse, "course_overviews") == 1
    after = status()
    assert after.code == 0 and "healthy (exit status 0)" in after.out and "Failed batches: 0" in after.out


def test_a_course_that_could_not_be_read_is_listed_until_it_is_taken_again(olx_dir, tmp_path):
    source = OlxFolderSource(root=olx_dir)
    exports = [write_course_export(tmp_path / f"c{i}", blocks=10, course=f"Unread{i}") for i in range(2)]
    keys = [source.add_export(export) for export in exports]
    break_course(olx_dir, keys[0])
    failed = snapshot_or_record_failure(keys[0], "published")
    assert failed.status == Snapshot.Status.FAILED
    error = last_line(failed.error)
    assert error

    one = status()
    assert one.code == 1
    assert "Subjects that could not be read: 1" in one.out
    assert f"\n  {keys[0]}: {error}" in one.out
    assert one.message == (f"1 course could not be read ({keys[0]}): outbox_requeue --failed takes them again; "
                           "dismiss unknown ones in the admin")
    assert status_json()["failed_snapshots"] == [{"producer": "course_structure", "subject": str(keys[0]),
                                                  "error": error}]

    break_course(olx_dir, keys[1])
    snapshot_or_record_failure(keys[1], "published")
    two = status()
    assert two.code == 1 and "Subjects that could not be read: 2" in two.out
    assert f"2 courses could not be read ({keys[0]}, {keys[1]})" in two.message

    for export in exports:
        source.add_export(export)  # readable again
    requeued = command("outbox_requeue", "--failed")
    assert requeued.code == 0, requeued.message
    assert "2 of 2 courses queued." in requeued.out
    healthy = status()
    assert healthy.code == 0 and "Subjects that could not be read: 0" in healthy.out


def test_clickhouse_failing_is_reported_with_its_error_until_a_batch_gets_through(server_clickhouse, settings):
    CourseSnapshotFactory()
    working = settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(working, **DOWN)
    drained = command("outbox_drain")
    assert drained.code == 1
    batch = Batch.objects.get()
    assert batch.status == Batch.Status.RETRY and batch.server_error
    assert "127.0.0.1:9" in batch.last_error

    outcome = status()  # nothing failed for good, nothing is old: ClickHouse itself is the problem
    assert outcome.code == 1
    assert f"ClickHouse is failing: batch {batch.pk} waits to retry at " in outcome.out
    assert f"last error: {batch.last_error}" in outcome.out
    assert outcome.message.startswith(f"ClickHouse is failing: new rows wait until batch {batch.pk} gets through")
    assert batch.last_error in outcome.message
    report = status_json()
    assert report["server_failure"]["batch"] == batch.pk
    assert report["server_failure"]["error"] == batch.last_error
    assert report["server_failure"]["next_attempt_at"] == batch.next_attempt_at.isoformat()
    assert report["failed_batches"] == 0 and report["totals"]["waiting"] == batch.row_count

    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = working  # ClickHouse is back
    command("outbox_requeue", "--failed")
    assert command("outbox_drain").code == 0
    assert status().code == 0
    assert Batch.objects.filter(status=Batch.Status.SENT).count() == 3


def test_rows_older_than_max_age_make_it_stuck(settings):
    CourseSnapshotFactory()
    age_rows(3600)
    stuck = status()  # the default allows 900 s
    assert stuck.code == 2
    assert "stuck (exit status 2)" in stuck.out
    assert "(allowed: 15 min)" in stuck.out
    assert stuck.message.startswith("the oldest unsent row has waited ") and "(more than 15 min)" in stuck.message
    assert status("--max-age", "7200").code == 0
    assert status("--max-age", "60").code == 2
    settings.CLICKHOUSE_OUTBOX_STATUS_MAX_AGE_SECS = 7200  # the default comes from the setting...
    assert status().code == 0
    assert status("--max-age", "1800").code == 2  # ... and --max-age overrides it
    report = status_json("--max-age", "1800")
    assert report["max_age_seconds"] == 1800 and report["oldest_unsent_age_seconds"] >= 3600


def test_rows_waiting_in_batches_count_as_unsent():
    CourseSnapshotFactory()
    for _ in range(3):  # every table's rows in a batch waiting out a backoff: no entry is pending
        owner = uuid.uuid4()
        batch = claim_batch(owner)
        mark_failed(batch, owner, ClickHouseError("Code: 60. Table does not exist"))
    assert not OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING).exists()
    assert status().code == 1  # waiting after an error: needs attention while it lasts
    age_rows(3600)
    assert status().code == 2  # and once the rows are old, stuck


def test_stuck_takes_precedence_over_failures(olx_dir, tmp_path):
    CourseSnapshotFactory()
    BatchFactory()
    key = OlxFolderSource(root=olx_dir).add_export(write_course_export(tmp_path / "c", blocks=10))
    break_course(olx_dir, key)
    snapshot_or_record_failure(key, "published")
    assert status().code == 1
    age_rows(3600)
    outcome = status()
    assert outcome.code == 2
    assert "stuck (exit status 2)" in outcome.out
    problems = outcome.message.split("; ")  # every problem is still named
    assert problems[0].startswith("the oldest unsent row has waited")
    assert any(problem.startswith("1 batch (0 rows) failed") for problem in problems)
    assert any(problem.startswith(f"1 course could not be read ({key})") for problem in problems)
    report = status_json()
    assert report["exit_code"] == 2 and len(report["problems"]) == 3


def test_json_is_one_object_with_the_same_exit_code():
    for setup, code in ((lambda: None, 0), (CourseSnapshotFactory, 0), (BatchFactory, 1), (lambda: age_rows(3600), 2)):
        setup()
        outcome = status("--json")
        report = json.loads(outcome.out)
        assert outcome.code == code and report["exit_code"] == code
        assert set(report) == JSON_KEYS
        assert set(report["totals"]) == {"pending", "sending", "waiting", "failed"}
        assert report["problems"] == ([] if code == 0 else outcome.message.split("; "))
        assert datetime.fromisoformat(report["checked_at"])
    assert datetime.fromisoformat(report["oldest_unsent_at"]) < datetime.fromisoformat(report["checked_at"])


# --- outbox_drain: delivery's part of the status ---------------------------------------------


def test_a_drain_that_sends_everything_exits_0(chdb_clickhouse):
    snapshot = CourseSnapshotFactory()
    outcome = command("outbox_drain")
    assert outcome.code == 0, outcome.message
    assert f"3 batches ({snapshot.row_count} rows) sent" in outcome.out
    assert count(chdb_clickhouse, "course_overviews") == 1
    report = status()
    assert report.code == 0 and "Last successful send: never" not in report.out
    assert status_json()["last_sent_at"] is not None


def test_a_drain_that_could_not_send_exits_1_and_so_does_the_status_while_the_batch_waits(server_clickhouse):
    """A table is missing: its batch waits to retry (an error of its own, not ClickHouse failing)."""
    server_clickhouse.command(f"DROP TABLE {qualified_name(server_clickhouse.database, 'course_overviews')}")
    CourseSnapshotFactory()
    outcome = command("outbox_drain")
    assert outcome.code == 1
    assert outcome.message.startswith("this run could not send everything (0 batches (0 rows) sent, 1 batch to retry")
    batch = Batch.objects.get(table="course_overviews")
    assert batch.status == Batch.Status.RETRY and not batch.server_error and batch.error_code == 60
    # The status says so too, for as long as the batch waits: cron does not see 1, 0, 1, 0...
    report = status()
    assert report.code == 1
    assert f"batch {batch.pk} (course_overviews) waits to retry after an error" in report.message
    assert status_json()["retrying"]["batch"] == batch.pk


def test_a_drain_exits_2_when_what_it_leaves_is_older_than_max_age(chdb_clickhouse):
    CourseSnapshotFactory()
    age_rows(3600)
    outcome = command("outbox_drain", "--max-batches", "1", "--max-age", "600")
    assert outcome.code == 2
    assert "1 batch" in outcome.out and Batch.objects.filter(status=Batch.Status.SENT).count() == 1
    assert outcome.message.startswith("the oldest unsent row has waited") and "(more than 10 min)" in outcome.message
    assert command("outbox_drain", "--max-age", "600").code == 0  # the rest sent: nothing is old any more


def test_stuck_takes_precedence_over_a_run_that_could_not_send(server_clickhouse, settings):
    CourseSnapshotFactory()
    age_rows(3600)
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG, **DOWN)
    outcome = command("outbox_drain")
    assert outcome.code == 2
    assert outcome.message.startswith("this run could not send everything")
    assert "the oldest unsent row has waited" in outcome.message and "ClickHouse is failing" in outcome.message


def test_until_empty_giving_up_on_stale_rows_exits_2(server_clickhouse, settings):
    """The help promises the exit status 'as outbox_status' for every mode: 2 when rows are stuck."""
    CourseSnapshotFactory()
    age_rows(3600)
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG, **DOWN)
    outcome = command("outbox_drain", "--until-empty", "--timeout", "1", "--max-age", "600")
    assert outcome.message.startswith("Gave up after 1s")
    assert status("--max-age", "600").code == 2
    assert outcome.code == 2


def test_rows_of_a_split_batch_keep_their_age(chdb_clickhouse):
    """
    ClickHouse rejects one row of an old batch: the batch is split, its halves wait to be sent.
    Those rows were queued an hour ago; the status must still say so.
    """
    snapshot = CourseSnapshotFactory()
    blocks = snapshot.entries.get(table="course_blocks")
    lines = blocks.lines().splitlines(keepends=True)
    assert len(lines) > 2
    lines[1] = lines[1].replace(b'"dump_id":"', b'"dump_id":"x')
    OutboxEntry.objects.filter(pk=blocks.pk).update(payload=b"".join(lines), encoding="")
    age_rows(3600)
    OutboxEntry.objects.filter(table="course_relationships").update(created=db_now())  # only the others are old
    # Batch 1: course_overviews, sent. Batch 2: course_blocks, split in two halves due now. Then stop.
    outcome = command("outbox_drain", "--max-batches", "2", "--max-age", "600")
    assert Batch.objects.get(table="course_blocks", status=Batch.Status.SPLIT)
    waiting = OutboxEntry.objects.filter(table="course_blocks", batch__status=Batch.Status.RETRY)
    assert sum(waiting.values_list("row_count", flat=True)) == len(lines)  # every old row still to send
    assert status("--max-age", "600").code == 2
    assert outcome.code == 2


# --- the exit statuses themselves, from manage.py ------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_manage_py_exits_with_the_status_code(tmp_path):
    """What cron and probes see: the process's exit status, JSON on stdout, the problems on stderr."""
    env = project_env({"url": f"chdb://{tmp_path / 'chdb'}", "database": "unused"})

    def run(*args):
        return subprocess.run(  # noqa: S603 (our own manage.py)
            [sys.executable, str(ROOT / "manage.py"), "outbox_status", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )

    empty = run("--json")
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout)["exit_code"] == 0 and empty.stderr == ""
    BatchFactory()
    failed = run("--json")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["exit_code"] == 1
    assert "1 batch (0 rows) failed" in failed.stderr and "Traceback" not in failed.stderr
    CourseSnapshotFactory()
    age_rows(3600)
    stuck = run()
    assert stuck.returncode == 2
    assert "stuck (exit status 2)" in stuck.stdout and "the oldest unsent row has waited" in stuck.stderr
