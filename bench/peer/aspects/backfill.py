"""
The peer's backfill: platform-plugin-aspects 2.1.0's own `dump_data_to_clickhouse` over a
site's learners, as an operator runs it, for the three models our backfill scenario dumps.

Its command is synchronous: for --object MODEL it pages through the model's table with
Django's Paginator (a COUNT, then `ORDER BY id LIMIT batch OFFSET n` with select_related),
and for every --batch_size objects (its default 10,000) serializes them with its DRF
serializer and POSTs one CSV INSERT to ClickHouse (input_format_allow_errors_num=1 /
_ratio=0.1: a row the server cannot parse may be skipped with a 200), then sleeps
--sleep_time seconds (its default 1) before the next batch. No celery: nothing is queued,
so "until ClickHouse holds every row" is "until the command returns".

`run` (the parent): the platform's tables made if missing (the stand-ins' schema) and the
learners of bench/learners.py written once (reused when the database holds them already: the
same rows as ours), then one child process per model, each running the command with
`--object MODEL --sleep_time S` (S = --sleep-time, 0 by default: the sleeps are the peer's
pacing, not its work; `default_sleep_seconds` says what its default of 1 s would add), timed
from the process's start to its end with its own peak RSS (os.wait4); then ClickHouse counted
(rows, missing, duplicated). `dump_object` is the child.
"""

import os
import subprocess
import sys
import tempfile
import time

import learners

OBJECTS = ("user_profile", "external_id", "course_enrollment")
#: Each table's key: a row held twice under it is a duplicate, a key not held a missing row.
KEYS = {"user_profile": "id", "external_id": "external_user_id", "course_enrollment": "id"}
#: The command's own default --batch_size (its argparse default).
PEER_BATCH_SIZE = 10_000


def log(message):
    print(message, file=sys.stderr, flush=True)


def ensure_tables():
    """
    auth's tables by its migrations; the stand-ins' made from the models when missing, or made
    again when a table differs from its model (an older stand-in): a stale table is never used.
    """
    from common.djangoapps.student.models import CourseEnrollment, UserProfile
    from django.core.management import call_command
    from django.db import connection
    from openedx.core.djangoapps.external_user_ids.models import ExternalId, ExternalIdType

    call_command("migrate", verbosity=0)
    standins = (CourseEnrollment, ExternalId, ExternalIdType, UserProfile)  # children first
    existing = set(connection.introspection.table_names())
    stale = []
    with connection.cursor() as cursor:
        for model in standins:
            table = model._meta.db_table
            if table in existing:
                columns = {column.name for column in connection.introspection.get_table_description(cursor, table)}
                if columns != {field.column for field in model._meta.local_concrete_fields}:
                    stale.append(model)
    with connection.schema_editor() as editor:
        for model in stale:
            editor.delete_model(model)
        for model in reversed(standins):
            if model in stale or model._meta.db_table not in existing:
                editor.create_model(model)
    return [model._meta.db_table for model in stale]


def run(args, clickhouse):
    from django.db import connection

    made_again = ensure_tables()
    generated = learners.generate(connection, args.users, log=log)
    connection.close()  # the children use their own connections; nothing held open meanwhile (SQLite)
    steps = []
    for name in OBJECTS:  # each step said as it ends: a run cut short later keeps them in its log
        steps.append(child(args, name))
        log(f"dump_data_to_clickhouse --object {name}: {steps[-1]['seconds']:.1f} s, exit {steps[-1]['exit_status']}")
    report = held(clickhouse, args.database, args.users)
    seconds = sum(step["seconds"] for step in steps)
    rows = sum(r["expected"] for r in report.values())
    batch = args.batch_size or PEER_BATCH_SIZE
    # Its default --sleep_time 1 sleeps after every full batch: what an operator leaving it waits more.
    default_sleep = sum(expected // batch for expected in learners.expected_rows(args.users).values())
    result = {
        "peer": "platform-plugin-aspects 2.1.0", "users": args.users, "steps": steps,
        "seconds": round(seconds, 3), "rows": rows, "rows_per_second": round(rows / seconds),
        "us_per_row": round(seconds * 1e6 / rows, 2), "held": report,
        "complete": all(r["missing"] == 0 and r["duplicated"] == 0 for r in report.values()),
        "failed_steps": [step["object"] for step in steps if step["exit_status"]],
        "peak_rss_mb": max(step["peak_rss_mb"] for step in steps), "sleep_time": args.sleep_time,
        "batch_size": batch, "default_sleep_seconds": default_sleep, "generated": generated,
        "stand_in_tables_made_again": made_again, "database": connection.vendor,
        "error": "; ".join(f"{step['object']}: {step['stderr'][-1] if step['stderr'] else step['exit_status']}"
                           for step in steps if step["exit_status"]) or None,
    }
    if args.drop_learners:
        learners.empty(connection)
    return result


def child(args, name):
    """One `dump_data_to_clickhouse --object NAME` in a process of its own: wall time and peak RSS."""
    argv = [arg for arg in sys.argv[1:]]
    for option in ("--scenario",):
        index = argv.index(option) if option in argv else None
        if index is not None:
            del argv[index:index + 2]
    argv = [arg for arg in argv if arg not in ("--drop-database", "--drop-learners")]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(  # noqa: S603 (this runner)
            [sys.executable, sys.argv[0], *argv, "--scenario", "dump_object", "--object", name],
            stdout=out, stderr=err, env=os.environ.copy())
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        lines = out.read().decode(errors="replace").splitlines()
        errors = [line for line in err.read().decode(errors="replace").splitlines() if line.strip()]
    import json

    inner = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    return {"object": name, "seconds": round(elapsed, 3), "command_seconds": inner.get("seconds"),
            "exit_status": os.waitstatus_to_exitcode(status), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "stderr": errors[-5:]}


def dump_object(args):
    """The child: the peer's command for one model, as `manage.py lms dump_data_to_clickhouse --object X` runs it."""
    import resource

    from django.core.management import call_command
    from platform_plugin_aspects.management.commands.dump_data_to_clickhouse import Command

    options = ["--object", args.object, "--sleep_time", str(args.sleep_time)]
    if args.batch_size:
        options += ["--batch_size", str(args.batch_size)]
    started = time.perf_counter()
    call_command(Command(), *options)
    return {"object": args.object, "seconds": round(time.perf_counter() - started, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def held(clickhouse, database, users):
    """What ClickHouse holds of the learners' rows, table by table: rows, missing and duplicated."""
    expected = learners.expected_rows(users)
    report = {}
    for name in OBJECTS:
        # toString: ClickHouse 18.16's uniqExact of a UUID column (external ids) is quadratic, minutes a million keys.
        text = clickhouse.query(f"SELECT count(), uniqExact(toString({KEYS[name]})) FROM `{database}`.{name} "
                                "FORMAT TabSeparated").split()
        rows, distinct = int(text[0]), int(text[1])
        report[name] = {"expected": expected[name], "rows": rows, "missing": expected[name] - distinct,
                        "duplicated": rows - distinct}
    return report
