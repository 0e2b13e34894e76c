"""
What operators type and what the commands answer: every numeric and date option is checked
before the command does anything (a clear error, exit status 2 from manage.py, nothing
changed in the outbox); --help shows the defaults; messages keep course keys as typed and
count in words ("1 course", "2 courses").
"""

import io
import json
import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from django.core.management import CommandError, call_command

from clickhouse_outbox.models import Batch, DumpJob, OutboxEntry, Snapshot
from clickhouse_outbox.sources.olx import OlxFolderSource
from clickhouse_outbox.testing.generator import write_course_export
from tests.factories import BatchFactory, CourseSnapshotFactory
from tests.processes import ROOT, project_env

SAMPLE_KEY = "course-v1:OpenedX+DemoX+2026_T1"
DOWN = {"url": "http://127.0.0.1:9", "connect_timeout_secs": 1}  # nothing listens on the discard port

NOT_SECONDS = "{!r} is not a number of seconds"
NOT_POSITIVE = "{} is not a number of seconds greater than 0"
NOT_WHOLE = "{!r} is not a whole number"
TOO_SMALL = "{} is too small: give 1 or more"
NOT_A_DATE = "{!r} is not a date or time: write e.g. 2026-11-01 or 2026-11-01T08:30 (UTC)"

# (command, arguments besides the bad option, option, bad value, what the error says)
BAD_OPTIONS = [
    ("outbox_drain", [], "--timeout", "0", NOT_POSITIVE),
    ("outbox_drain", ["--until-empty"], "--timeout", "-5", NOT_POSITIVE),
    ("outbox_drain", [], "--timeout", "soon", NOT_SECONDS),
    ("outbox_drain", [], "--interval", "0", NOT_POSITIVE),  # it used to become 10 s without a word
    ("outbox_drain", [], "--interval", "-1", NOT_POSITIVE),
    ("outbox_drain", [], "--max-batches", "0", TOO_SMALL),
    ("outbox_drain", [], "--max-batches", "-2", TOO_SMALL),
    ("outbox_drain", [], "--max-batches", "1.5", NOT_WHOLE),
    ("outbox_drain", [], "--max-age", "0", NOT_POSITIVE),
    ("outbox_drain", [], "--max-age", "-60", NOT_POSITIVE),
    ("outbox_drain", [], "--max-age", "nan", NOT_POSITIVE),
    ("outbox_drain", [], "--max-age", "inf", NOT_POSITIVE),
    ("outbox_status", [], "--max-age", "0", NOT_POSITIVE),
    ("outbox_status", ["--json"], "--max-age", "-1", NOT_POSITIVE),
    ("outbox_status", [], "--max-age", "15m", NOT_SECONDS),
    ("dump_courses_to_clickhouse", [], "--limit", "0", TOO_SMALL),
    ("dump_courses_to_clickhouse", [], "--limit", "-3", TOO_SMALL),
    ("dump_courses_to_clickhouse", [], "--limit", "ten", NOT_WHOLE),
    ("dump_courses_to_clickhouse", ["--drain"], "--timeout", "0", NOT_POSITIVE),
    ("dump_courses_to_clickhouse", ["--drain"], "--timeout", "-1", NOT_POSITIVE),
    ("outbox_requeue", ["--all", "--drain"], "--timeout", "0", NOT_POSITIVE),
    ("dump_data_to_clickhouse", ["--object", "user_profile", "--drain"], "--timeout", "nan", NOT_POSITIVE),
    ("dump_courses_to_clickhouse", [], "--changed-since", "yesterday", NOT_A_DATE),
    ("dump_courses_to_clickhouse", [], "--changed-since", "2026-13-01", NOT_A_DATE),
    ("outbox_requeue", ["--failed"], "--changed-since", "last week", NOT_A_DATE),
    ("outbox_requeue", ["--failed"], "--changed-since", "2026-02-30", NOT_A_DATE),
]


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def outbox_state():
    """Everything a command could change, to compare before and after."""
    return {
        "snapshots": sorted(Snapshot.objects.values_list("id", "status")),
        "entries": sorted(OutboxEntry.objects.values_list("id", "status", "batch_id")),
        "batches": sorted(Batch.objects.values_list("id", "status", "attempts", "attempts_at_requeue",
                                                    "next_attempt_at", "last_error")),
        "dump_jobs": sorted(DumpJob.objects.values_list("id", "status")),
    }


@pytest.fixture
def busy_outbox(olx_dir, tmp_path, settings):
    """
    Work for every command: pending rows and a failed batch for the drain (towards a ClickHouse
    that is down: a drain would record its failure) and for --failed, a course for the dumps.
    """
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG, **DOWN)
    CourseSnapshotFactory()
    BatchFactory()
    OlxFolderSource(root=olx_dir).add_export(write_course_export(tmp_path / "c", blocks=10))
    return outbox_state()


# --- bad values: refused before anything is done ------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "args", "option", "value", "says"), BAD_OPTIONS,
                         ids=[f"{name} {option} {value}" for name, _, option, value, _ in BAD_OPTIONS])
def test_a_bad_option_is_refused_and_changes_nothing(busy_outbox, name, args, option, value, says):
    with pytest.raises(CommandError) as refused:
        run(name, *args, option, value)
    assert str(refused.value) == f"Error: argument {option}: {says.format(value)}"
    assert outbox_state() == busy_outbox


@pytest.mark.django_db
def test_good_values_are_taken(busy_outbox, olx_dir):
    """The same options with sensible values do run (the refusals above are about the values)."""
    out = io.StringIO()
    with pytest.raises(CommandError):  # the failed batch
        call_command("outbox_status", "--max-age", "0.5", "--json", stdout=out)
    assert json.loads(out.getvalue())["max_age_seconds"] == 0.5
    with pytest.raises(CommandError) as failing:  # ClickHouse is down: the drain runs, and says so
        run("outbox_drain", "--max-batches", "1", "--timeout", "30", "--interval", "1.5", "--max-age", "3600")
    assert failing.value.returncode == 1 and "this run could not send everything" in str(failing.value)
    assert Batch.objects.filter(status=Batch.Status.RETRY, server_error=True).count() == 1
    out, _ = run("dump_courses_to_clickhouse", "--limit", "1")
    assert "done: 1 of 1 course (1 queued)" in out


@pytest.mark.django_db
def test_changed_since_is_utc_unless_it_says_otherwise(olx_dir):
    out, _ = run("outbox_requeue", "--changed-since", "2026-11-01T08:30")
    assert "courses changed since 2026-11-01 08:30:00 UTC" in out
    run("outbox_requeue", "--changed-since", "2026-11-01T08:30+02:00")
    run("dump_courses_to_clickhouse", "--changed-since", "2026-11-02")
    assert list(DumpJob.objects.order_by("id").values_list("scope", "changed_since")) == [
        (DumpJob.Scope.CHANGED, datetime(2026, 11, 1, 8, 30, tzinfo=timezone.utc)),
        (DumpJob.Scope.CHANGED, datetime(2026, 11, 1, 6, 30, tzinfo=timezone.utc)),
        (DumpJob.Scope.CHANGED, datetime(2026, 11, 2, tzinfo=timezone.utc)),
    ]


# --- the same from manage.py: argparse's exit status 2 --------------------------------------


@pytest.mark.django_db(transaction=True)
def test_manage_py_refuses_bad_options_with_exit_status_2(busy_outbox, olx_dir, settings):
    env = project_env(dict(settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG, **DOWN), OLX_COURSES_DIR=olx_dir)
    cases = [
        # --loop with --interval 0 ran forever without pause... or, before, every 10 s without a word.
        (["outbox_drain", "--loop", "--interval", "0"], "argument --interval: " + NOT_POSITIVE.format("0")),
        (["outbox_drain", "--max-batches", "0"], "argument --max-batches: " + TOO_SMALL.format("0")),
        (["outbox_status", "--max-age", "-1"], "argument --max-age: " + NOT_POSITIVE.format("-1")),
        (["outbox_requeue", "--failed", "--changed-since", "yesterday"],
         "argument --changed-since: " + NOT_A_DATE.format("yesterday")),
        (["dump_courses_to_clickhouse", "--drain", "--limit", "0"], "argument --limit: " + TOO_SMALL.format("0")),
    ]
    processes = [
        (args, says, subprocess.Popen(  # noqa: S603 (our own manage.py)
            [sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
        for args, says in cases
    ]
    for args, says, process in processes:
        try:
            out, err = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            pytest.fail(f"manage.py {' '.join(args)} was not refused: it was still running")
        assert process.returncode == 2, (args, out, err)
        assert f"manage.py {args[0]}: error: {says}" in err, err
        assert out == ""
    assert outbox_state() == busy_outbox


# --- --help -----------------------------------------------------------------------------


def help_texts(tmp_path, commands, **env):
    """`manage.py COMMAND --help` for each command, with its words on one line."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("CLICKHOUSE_OUTBOX_")}
    environ.update(DATABASE_URL=f"sqlite:///{tmp_path / 'unused.sqlite3'}", OUTBOX_DEMO_DIR=str(tmp_path), **env)
    processes = [
        subprocess.Popen(  # noqa: S603 (our own manage.py)
            [sys.executable, str(ROOT / "manage.py"), name, "--help"], cwd=ROOT, env=environ,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name in commands
    ]
    texts = {}
    for name, process in zip(commands, processes):
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        texts[name] = " ".join(out.split())
    return texts


def test_help_shows_the_defaults(tmp_path):
    dumping = ["dump_courses_to_clickhouse", "dump_data_to_clickhouse", "outbox_requeue"]
    texts = help_texts(tmp_path, ["outbox_drain", *dumping, "outbox_status"])
    drain = texts["outbox_drain"]
    assert "--timeout SECONDS With --until-empty: give up after SECONDS (default: 600)." in drain
    assert "--interval SECONDS With --loop: seconds between runs (default: CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS, now 10)." in drain
    assert "--max-batches N Stop after N batches (default: no limit" in drain
    max_age = ("--max-age SECONDS Exit with status 2 when the oldest unsent row is older than this "
               "(default: CLICKHOUSE_OUTBOX_STATUS_MAX_AGE_SECS, now 900).")
    assert max_age in drain
    for name in dumping:
        assert ("--timeout SECONDS With --drain: give up waiting after SECONDS once everything is queued "
                "(default: 3600).") in texts[name], name
    dump = texts["dump_courses_to_clickhouse"]
    assert "--limit N Queue at most N courses (default: no limit)." in dump
    assert "--password" not in dump and "--url" not in dump  # refused, so not offered
    assert max_age in texts["outbox_status"]


def test_help_shows_the_max_age_setting_in_force(tmp_path):
    texts = help_texts(tmp_path, ["outbox_status"], CLICKHOUSE_OUTBOX_STATUS_MAX_AGE_SECS="120")
    assert "(default: CLICKHOUSE_OUTBOX_STATUS_MAX_AGE_SECS, now 120)." in texts["outbox_status"]


# --- messages -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_requeueing_one_course_says_1_course_with_its_key_as_typed(sample_course_key):
    out, err = run("outbox_requeue", SAMPLE_KEY)
    snapshot = Snapshot.objects.get(subject=SAMPLE_KEY)
    assert out.splitlines() == [f"[1/1] {SAMPLE_KEY}: {snapshot.row_count} rows queued", "1 of 1 course queued."]
    assert err == ""


@pytest.mark.django_db
def test_courses_that_are_not_queued_are_named_as_typed(sample_course_key):
    typed = ["edX/Missing/2014", "course-v1:No+Such+Course"]  # an old-style key, and a new one
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("outbox_requeue", typed[0], SAMPLE_KEY, typed[1], stdout=out, stderr=err)
    assert str(failed.value) == "2 courses could not be queued."
    lines = err.getvalue().splitlines()
    assert [line.split(": ")[:2] for line in lines] == [["Not queued", key] for key in typed]
    assert [line.count(key) for line, key in zip(lines, typed)] == [1, 1]  # named once, not "KEY: KEY: ..."
    assert out.getvalue().splitlines()[-1] == "1 of 3 courses queued."
    assert list(Snapshot.objects.values_list("subject", flat=True)) == [SAMPLE_KEY]  # nothing recorded for them

    with pytest.raises(CommandError) as one:
        run("outbox_requeue", typed[1])
    assert str(one.value) == "1 course could not be queued."


@pytest.mark.django_db
def test_failed_batches_are_counted_in_words():
    BatchFactory()
    out, _ = run("outbox_requeue", "--failed")
    assert out.splitlines() == ["1 failed or waiting batch made due now."]
    BatchFactory.create_batch(2)
    out, _ = run("outbox_requeue", "--failed")
    assert out.splitlines() == ["3 failed or waiting batches made due now."]  # the first one waits too


@pytest.mark.django_db
def test_a_dump_of_one_course_says_1_course(sample_course_key):
    out, _ = run("dump_courses_to_clickhouse", "--courses", SAMPLE_KEY)
    job = DumpJob.objects.get()
    assert f"Dump job {job.pk}: selected courses." in out
    assert f"Dump job {job.pk} done: 1 of 1 course (1 queued). The drain sends their rows." in out
