#!/usr/bin/env python
"""
Time the peer, openedx-event-sink-clickhouse 1.1.1, writing synthetic courses to ClickHouse.

Run it with the peer's venv (bench/peer/setup_venv.sh builds it):

    .bench/peer-venv/bin/python bench/peer/run_peer.py --url http://127.0.0.1:18123 \
        --user outbox --password-env CLICKHOUSE_TEST_PASSWORD --database peer_bench \
        --scenario publish --blocks 1000 --repeat 5
    ... --scenario full_dump --courses 200 --blocks 400 --repeat 3

Scenarios (the peer's own code, unchanged; only edx-platform is stood in for):

* publish: one course of --blocks blocks; each sample is one call of the peer's celery
  task body `event_sink_clickhouse.tasks.dump_course_to_clickhouse(course_key)`, run
  synchronously as a worker would: CourseOverview read from the ORM, serialized and
  INSERTed (1 row), then `modulestore().get_items()` serialized and INSERTed as one CSV
  POST to course_blocks. Every sample is a fresh dump (new dump_id and time_last_dumped).
* full_dump: --courses courses of --blocks blocks; each sample is one run of the peer's
  management command `dump_data_to_clickhouse --object course_overviews --force` (its
  per-course path: every overview in one INSERT, then each course's blocks in one INSERT).

The courses come from clickhouse_outbox.testing.generator.generate_published_course
(org GenX; publish: course Gen101 run R1 seed --seed; full_dump: course Gen101, runs
R1..RC, seeds seed..seed+C-1) and are loaded into the stand-in modulestore and the
in-memory CourseOverview table before timing starts. Only the peer's work is timed.

Before timing, the destination tables are created with this project's own DDL
(`manage.py clickhouse_outbox_schema --create`, run with the project's .venv) unless
--no-create-schema. After timing, the rows are counted in ClickHouse: the peer inserts
CSV with input_format_allow_errors_num=1 / _ratio=0.1, so a server may answer 200 and
drop rows; `rows_dropped` says how many of the expected rows did not land.

Prints one JSON object on stdout; everything else goes to stderr.
"""

import argparse
import contextlib
import gc
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "bench"))  # bench/clickhouse_http.py

from clickhouse_http import ClickHouse  # noqa: E402
STANDINS = HERE / "standins"

TABLES = ("course_overviews", "course_blocks", "course_relationships")
# The peer 1.1.1 writes no course_relationships rows (its XBlockSink has no nested sink).
DETACHED_BLOCKS_PER_COURSE = 2  # the generator adds about/overview and course_info/updates


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("CLICKHOUSE_TEST_URL", "http://127.0.0.1:18123"))
    parser.add_argument("--user", default=os.environ.get("CLICKHOUSE_TEST_USERNAME", "default"))
    parser.add_argument("--password-env", default="CLICKHOUSE_TEST_PASSWORD",
                        help="name of the environment variable holding the password")
    parser.add_argument("--database", required=True, help="ClickHouse database to write to (created if missing)")
    parser.add_argument("--scenario", choices=("publish", "full_dump"), required=True)
    parser.add_argument("--blocks", type=int, default=1000, help="blocks in each course tree, course block included")
    parser.add_argument("--courses", type=int, default=None, help="full_dump: number of courses (default 200)")
    parser.add_argument("--repeat", type=int, default=None, help="timed samples (default: publish 5, full_dump 3)")
    parser.add_argument("--warmup", type=int, default=0, help="untimed runs before the samples (rows counted too)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout-secs", type=float, default=None,
                        help="the peer's HTTP timeout (default: the peer's own, 5 s)")
    parser.add_argument("--no-create-schema", dest="create_schema", action="store_false",
                        help="do not run clickhouse_outbox_schema --create first")
    parser.add_argument("--schema-python", default=str(REPO / ".venv" / "bin" / "python"),
                        help="python of the project's venv, to run manage.py clickhouse_outbox_schema")
    parser.add_argument("--self-paced-as-string", action="store_true",
                        help="after creating the tables, change course_overviews.self_paced to String so an old "
                             "server (no Bool type: the contract falls back to UInt8) accepts the peer's "
                             "unquoted True/False; without it such a server rejects the peer's overview rows")
    parser.add_argument("--drop-database", action="store_true", help="DROP the database when done")
    args = parser.parse_args(argv)
    if args.courses is None:
        args.courses = 1 if args.scenario == "publish" else 200
    if args.scenario == "publish" and args.courses != 1:
        parser.error("publish times one course: leave --courses out")
    if args.repeat is None:
        args.repeat = 5 if args.scenario == "publish" else 3
    if args.blocks < 1 or args.courses < 1 or args.repeat < 1:
        parser.error("--blocks, --courses and --repeat must be at least 1")
    if args.password_env not in os.environ:
        parser.error(f"--password-env: {args.password_env} is not in the environment (export it)")
    args.password = os.environ[args.password_env]
    return args


# -- ClickHouse, outside the timed part ----------------------------------------------------


def counts(clickhouse, database):
    return {table: clickhouse.count(database, table) for table in TABLES}


def create_schema(args, clickhouse):
    env = dict(os.environ, CLICKHOUSE_URL=args.url, CLICKHOUSE_USERNAME=args.user,
               CLICKHOUSE_PASSWORD=args.password, CLICKHOUSE_DATABASE=args.database)
    subprocess.run(
        [args.schema_python, str(REPO / "manage.py"), "clickhouse_outbox_schema", "--create"],
        cwd=REPO, env=env, check=True, stdout=sys.stderr,
    )
    if args.self_paced_as_string:
        clickhouse.query(f"ALTER TABLE `{args.database}`.course_overviews MODIFY COLUMN self_paced String")


# -- the peer, outside the platform --------------------------------------------------------


def configure_django(args):
    """Minimal settings for the peer: its own defaults, our ClickHouse, the stand-in model."""
    sys.path.insert(0, str(STANDINS))
    import django
    from django.conf import settings
    from event_sink_clickhouse.settings.common import plugin_settings

    peer = SimpleNamespace()
    plugin_settings(peer)
    backend = dict(peer.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG, url=args.url, username=args.user,
                   password=args.password, database=args.database)
    if args.timeout_secs is not None:
        backend["timeout_secs"] = args.timeout_secs
    settings.configure(
        INSTALLED_APPS=["course_overviews"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        USE_TZ=True,
        TIME_ZONE="UTC",  # as edx-platform
        FEATURES={},  # read by the peer's get_ccx_courses (CUSTOM_COURSES_EDX off)
        EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG=backend,
        EVENT_SINK_CLICKHOUSE_PII_MODELS=peer.EVENT_SINK_CLICKHOUSE_PII_MODELS,
        # Only the model the course path uses; the platform's others (user_profile...) do not exist here.
        EVENT_SINK_CLICKHOUSE_MODEL_CONFIG={
            "course_overviews": {"module": "course_overviews.models", "model": "CourseOverview"},
        },
        # CourseOverviewSink.is_enabled(): the settings switch, so no waffle table is needed.
        EVENT_SINK_CLICKHOUSE_COURSE_OVERVIEWS_ENABLED=True,
        # No monitoring backend (the platform's default is New Relic, not installed here).
        OPENEDX_TELEMETRY=[],
    )
    django.setup()

    from course_overviews.models import CourseOverview
    from django.db import connection

    with connection.schema_editor() as editor:
        editor.create_model(CourseOverview)

    # The peer's serializers module builds ModelSerializers for platform models that are not
    # here (user_profile, external_id, auth_user); get_model logs an error for each at import.
    utils_log = logging.getLogger("event_sink_clickhouse.utils")
    level = utils_log.level
    utils_log.setLevel(logging.CRITICAL)
    try:
        import event_sink_clickhouse.serializers  # noqa: F401
        import event_sink_clickhouse.sinks.course_published  # noqa: F401
        import event_sink_clickhouse.tasks  # noqa: F401
    finally:
        utils_log.setLevel(level)


def load_courses(args):
    """Generate the courses and load them into the stand-ins (untimed)."""
    from clickhouse_outbox.testing.generator import generate_published_course
    from course_overviews.models import CourseOverview
    from xmodule.modulestore.django import modulestore

    store = modulestore()
    now = datetime.now(UTC)
    keys = []
    for index in range(args.courses):
        course = generate_published_course(args.blocks, org="GenX", course="Gen101", run=f"R{index + 1}",
                                           seed=args.seed + index)
        store.add_course(course)
        CourseOverview.from_published_course(course, modified=now).save(force_insert=True)
        keys.append(str(course.course_key))
    return keys


def run_publish(course_key):
    from event_sink_clickhouse.tasks import dump_course_to_clickhouse

    # The celery task object, called directly: Task.__call__ runs its body in this process.
    dump_course_to_clickhouse(course_key)


def run_full_dump():
    from django.core.management import call_command
    from event_sink_clickhouse.management.commands.dump_data_to_clickhouse import Command

    # Its defaults: --batch_size 10000 (so every course in one batch) and --sleep_time 1,
    # which only sleeps between full batches.
    call_command(Command(), "--object", "course_overviews", "--force")


def peak_rss_mb():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    clickhouse = ClickHouse(args.url, args.user, args.password)
    server_version = clickhouse.query("SELECT version()").strip()
    if args.create_schema:
        create_schema(args, clickhouse)

    configure_django(args)
    keys = load_courses(args)
    if args.scenario == "publish":
        def work():
            run_publish(keys[0])
    else:
        work = run_full_dump

    before = counts(clickhouse, args.database)
    rss_before = peak_rss_mb()
    samples, error, runs = [], None, 0
    with contextlib.redirect_stdout(sys.stderr):
        for attempt in range(args.warmup + args.repeat):
            gc.collect()
            runs += 1
            started = time.perf_counter()
            try:
                work()
            except Exception as exc:  # the peer raises on HTTP errors after logging them
                error = f"{type(exc).__name__}: {exc}"
                logging.getLogger("run_peer").error("peer run %d failed: %s", attempt + 1, error)
                break
            elapsed_ms = (time.perf_counter() - started) * 1000
            if attempt >= args.warmup:
                samples.append(round(elapsed_ms, 2))
    peak = peak_rss_mb()

    after = counts(clickhouse, args.database)
    rows_written = {table: (after[table] or 0) - (before[table] or 0) for table in TABLES}
    # Rows the peer should have written for the runs it completed (a failed run may have
    # written part of its rows; it is counted as expected in full so the gap shows).
    expected = {
        "course_overviews": runs * args.courses,
        "course_blocks": runs * args.courses * (args.blocks + DETACHED_BLOCKS_PER_COURSE),
        "course_relationships": 0,
    }
    result = {
        "scenario": args.scenario,
        "blocks": args.blocks,
        "courses": args.courses,
        "samples_ms": samples,
        "median_ms": round(statistics.median(samples), 2) if samples else None,
        "min_ms": min(samples) if samples else None,
        "max_ms": max(samples) if samples else None,
        "peak_rss_mb": peak,
        "rows_written": rows_written,
        # extra detail
        "rows_expected": expected,
        "rows_dropped": {table: expected[table] - rows_written[table] for table in TABLES},
        "relationship_rows_not_written_by_peer": runs * args.courses * (args.blocks - 1),
        "runs_including_warmup": runs,
        "rss_before_timing_mb": rss_before,
        "peer": "openedx-event-sink-clickhouse 1.1.1",
        "server_version": server_version,
        "database": args.database,
        "self_paced_as_string": args.self_paced_as_string,
        "error": error,
    }
    if args.drop_database:
        clickhouse.query(f"DROP DATABASE IF EXISTS `{args.database}`")
    print(json.dumps(result))
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main())
