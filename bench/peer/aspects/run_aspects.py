#!/usr/bin/env python
"""
Time the peer, platform-plugin-aspects 2.1.0 (what Tutor's Aspects runs): by default
(--scenario bulk_enroll) on its course_enrollment path, a bulk enroll in one transaction,
then the worker's tasks; --scenario backfill: its `dump_data_to_clickhouse` command over a
site's learners (backfill.py); --scenario publish: its course sink's task for one course
(course_publish.py).

Run it with its own venv (bench/peer/aspects/setup_venv.sh builds .bench/aspects-venv):

    .bench/aspects-venv/bin/python bench/peer/aspects/run_aspects.py --url http://127.0.0.1:18123 \\
        --user outbox --password-env CLICKHOUSE_TEST_PASSWORD --database bench_aspects \\
        --database-url sqlite:////abs/path/aspects.sqlite3 --redis-url redis://127.0.0.1:6379/14 \\
        --enrollments 10000 --tasks 500

What is timed (the peer's own code, unchanged; only edx-platform is stood in for):

* request side: --enrollments users are made first (untimed), then ONE transaction enrolls
  each of them as edx-platform's CourseEnrollment.enroll does: the row saved
  (get_or_create, then save), COURSE_ENROLLMENT_CHANGED sent, ENROLL_STATUS_CHANGE sent
  (CourseEnrollment.send_signal; the peer's receive_course_enrollment_changed is connected
  to it the way the LMS connects plugin receivers, edx_django_utils'
  connect_plugin_receivers("lms.djangoapp")), COURSE_ENROLLMENT_CREATED sent. The peer's
  receiver registers a transaction.on_commit callback per enrollment; at the commit each
  callback runs CourseEnrollment.objects.get(user=, course_id=) and
  dump_data_to_clickhouse.delay(...), a celery message published to the real Redis at
  --redis-url. Timed as a whole (loop + commit with its callbacks), and the same
  transaction before the peer's receiver is connected, as the platform's own part (after
  an untimed warm-up transaction of a tenth of the users, also without the receiver).
* worker side: --tasks of those messages are read back from Redis (untimed: the JSON a
  worker would fetch) and each task body is run synchronously in this process, as a worker
  runs it (Task.__call__ of the task the message names): Sink.is_enabled(), the enrollment
  read, the DRF CourseEnrollmentSerializer, one HTTP POST of one CSV row to ClickHouse.
* statements: untimed passes with a statement counter (connection.execute_wrapper) over
  --count-enrollments enrollments with and without the receiver, and over --count-tasks tasks.

Redis: the db of --redis-url is flushed before and after. ClickHouse: the table is created
with this project's DDL (`manage.py clickhouse_outbox_schema --create --producer
course_enrollment`, run with the project's .venv); --bool-as-string then changes
course_enrollment.is_active to String (see README.txt: an old server cannot parse the
peer's True/False into the UInt8 that stands for Bool there).

The other scenarios are described in backfill.py and course_publish.py, and in README.txt.

Prints one JSON object on stdout; everything else goes to stderr.
"""

import argparse
import base64
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
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote, urlsplit

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
STANDINS = HERE / "standins"
sys.path.insert(0, str(REPO / "bench"))  # bench/transactions.py, learners.py and clickhouse_http.py

from clickhouse_http import ClickHouse  # noqa: E402

from transactions import StatementCounter, enroll_all, figures, per_item  # noqa: E402

import backfill  # noqa: E402 (this folder: the peer's dump_data_to_clickhouse over a site's learners)
import course_publish  # noqa: E402 (this folder: the peer's course task)

TABLE = "course_enrollment"
SCENARIOS = ("bulk_enroll", "backfill", "dump_object", "publish")
#: The ClickHouse tables each scenario writes, as this project's clickhouse_outbox_schema --producer names them.
SCHEMA_PRODUCERS = {"bulk_enroll": ["course_enrollment"], "backfill": ["user_profile", "external_id", "course_enrollment"],
                    "publish": ["course_structure"]}
#: --bool-as-string: the Bool columns the peer writes as unquoted True/False, by table.
BOOL_COLUMNS = {"course_enrollment": "is_active", "course_overviews": "self_paced"}
RECEIVER_UID = "platform_plugin_aspects.signals.receive_course_enrollment_changed"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("CLICKHOUSE_TEST_URL", "http://127.0.0.1:18123"))
    parser.add_argument("--user", default=os.environ.get("CLICKHOUSE_TEST_USERNAME", "default"))
    parser.add_argument("--password-env", default="CLICKHOUSE_TEST_PASSWORD",
                        help="name of the environment variable holding the password")
    parser.add_argument("--scenario", choices=SCENARIOS, default="bulk_enroll",
                        help="bulk_enroll (default); backfill: its dump_data_to_clickhouse over --users learners; "
                             "publish: its course task for one course of --blocks blocks (dump_object: backfill's "
                             "child process, one --object)")
    parser.add_argument("--database", required=True, help="ClickHouse database to write to (created if missing)")
    parser.add_argument("--database-url", required=True,
                        help="the platform's database: sqlite:///path | mysql://user@host:port/db | postgres://...")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14",
                        help="the celery broker; its db is flushed before and after")
    parser.add_argument("--enrollments", type=int, default=10_000, help="enrollments in the one transaction")
    parser.add_argument("--tasks", type=int, default=500, help="worker task bodies run and timed")
    parser.add_argument("--count-enrollments", type=int, default=1000,
                        help="enrollments whose statements are counted (untimed)")
    parser.add_argument("--count-tasks", type=int, default=20, help="tasks whose statements are counted (untimed)")
    parser.add_argument("--timeout-secs", type=float, default=None,
                        help="the peer's HTTP timeout (default: the peer's own, 5 s)")
    parser.add_argument("--no-create-schema", dest="create_schema", action="store_false")
    parser.add_argument("--schema-python", default=str(REPO / ".venv" / "bin" / "python"),
                        help="python of the project's venv, to run manage.py clickhouse_outbox_schema")
    parser.add_argument("--bool-as-string", action="store_true",
                        help="after creating the table, change course_enrollment.is_active to String so an old "
                             "server (no Bool: the contract falls back to UInt8) accepts the peer's True/False")
    parser.add_argument("--drop-database", action="store_true", help="DROP the ClickHouse database when done")
    parser.add_argument("--users", type=int, default=10_000, help="backfill: users on the site (bench/learners.py)")
    parser.add_argument("--object", help="dump_object: the model dumped (user_profile, external_id, course_enrollment)")
    parser.add_argument("--sleep-time", type=int, default=0,
                        help="backfill: the command's --sleep_time between full batches (its default is 1 s)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="backfill: the command's --batch_size (default: its own, 10,000)")
    parser.add_argument("--drop-learners", action="store_true",
                        help="backfill: empty the platform's tables when done (else they are reused by the next run)")
    parser.add_argument("--blocks", type=int, default=1000, help="publish: blocks in the course tree")
    parser.add_argument("--repeat", type=int, default=5, help="publish: timed runs of the task")
    parser.add_argument("--warmup", type=int, default=0, help="publish: untimed runs first")
    args = parser.parse_args(argv)
    if args.scenario != "bulk_enroll":
        if args.password_env not in os.environ:
            parser.error(f"--password-env: {args.password_env} is not in the environment (export it)")
        args.password = os.environ[args.password_env]
        if args.scenario == "dump_object" and not args.object:
            parser.error("dump_object needs --object")
        return args
    if min(args.enrollments, args.tasks, args.count_enrollments) < 1:
        parser.error("--enrollments, --tasks and --count-enrollments must be at least 1")
    if args.tasks + args.count_tasks > args.enrollments:
        parser.error("--tasks + --count-tasks must not exceed --enrollments (one message per enrollment)")
    if args.password_env not in os.environ:
        parser.error(f"--password-env: {args.password_env} is not in the environment (export it)")
    args.password = os.environ[args.password_env]
    args.count_enrollments = min(args.count_enrollments, args.enrollments)
    return args


# -- ClickHouse and Redis, outside the timed parts -----------------------------------------


def create_schema(args, clickhouse):
    """The scenario's tables, with this project's DDL (and --bool-as-string's ALTERs)."""
    env = dict(os.environ, CLICKHOUSE_URL=args.url, CLICKHOUSE_USERNAME=args.user,
               CLICKHOUSE_PASSWORD=args.password, CLICKHOUSE_DATABASE=args.database)
    env.pop("DATABASE_URL", None)
    producers = [part for name in SCHEMA_PRODUCERS[args.scenario] for part in ("--producer", name)]
    subprocess.run(  # noqa: S603 (the project's own command)
        [args.schema_python, str(REPO / "manage.py"), "clickhouse_outbox_schema", "--create", *producers],
        cwd=REPO, env=env, check=True, stdout=sys.stderr,
    )
    if args.bool_as_string:
        for table, column in BOOL_COLUMNS.items():
            if clickhouse.count(args.database, table) is not None:
                clickhouse.query(f"ALTER TABLE `{args.database}`.{table} MODIFY COLUMN {column} String")


# -- the peer, outside the platform --------------------------------------------------------


def database_settings(url):
    """A DATABASES entry from a URL (dj-database-url's forms, without the dependency)."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": url[len("sqlite:///"):], "OPTIONS": {"timeout": 30}}
    engine = {"mysql": "django.db.backends.mysql", "postgres": "django.db.backends.postgresql",
              "postgresql": "django.db.backends.postgresql"}[parts.scheme]
    config = {"ENGINE": engine, "NAME": parts.path.lstrip("/"), "USER": unquote(parts.username or ""),
              "PASSWORD": unquote(parts.password or ""), "HOST": parts.hostname or "", "PORT": str(parts.port or ""),
              "CONN_MAX_AGE": 0}
    if engine.endswith("mysql"):
        # edx-platform's MySQL options (utf8mb4; READ COMMITTED, as Tutor's MySQL runs it).
        config["OPTIONS"] = {"charset": "utf8mb4", "isolation_level": "read committed"}
    return config


#: The models each scenario configures (EVENT_SINK_CLICKHOUSE_MODEL_CONFIG, beside auth_user), each
#: pointed at its stand-in, and the stand-in apps installed for them. Only the models a scenario
#: uses: the peer's signals.py connects a post_save receiver to every configured model there is.
SCENARIO_MODELS = {
    "bulk_enroll": {"course_enrollment": "common.djangoapps.student.models.CourseEnrollment"},
    "backfill": {"course_enrollment": "common.djangoapps.student.models.CourseEnrollment",
                 "user_profile": "common.djangoapps.student.models.UserProfile",
                 "external_id": "openedx.core.djangoapps.external_user_ids.models.ExternalId"},
    "publish": {"course_overviews": "course_overviews.models.CourseOverview"},
}
SCENARIO_APPS = {
    "bulk_enroll": ["common.djangoapps.student"],  # the stand-in CourseEnrollment and UserProfile
    "backfill": ["common.djangoapps.student", "openedx.core.djangoapps.external_user_ids"],
    "publish": ["course_overviews"],  # bench/peer/standins' CourseOverview (shared with the other peer)
}


def configure_django(args):
    """The peer's own settings defaults, our ClickHouse, the stand-in models and the broker."""
    scenario = "backfill" if args.scenario == "dump_object" else args.scenario
    sys.path.insert(0, str(STANDINS))
    if scenario == "publish":  # the modulestore and CourseOverview stand-ins of bench/peer/standins
        sys.path.insert(1, str(HERE.parent / "standins"))
    import django
    from django.conf import settings
    from platform_plugin_aspects.settings.common import plugin_settings

    peer = SimpleNamespace(MAKO_TEMPLATE_DIRS_BASE=[])
    plugin_settings(peer)
    backend = dict(peer.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG, url=args.url, username=args.user,
                   password=args.password, database=args.database)
    if args.timeout_secs is not None:
        backend["timeout_secs"] = args.timeout_secs
    models = {name: {"module": path.rsplit(".", 1)[0], "model": path.rsplit(".", 1)[1]}
              for name, path in SCENARIO_MODELS[scenario].items()}
    settings.configure(
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            *SCENARIO_APPS[scenario],
            "platform_plugin_aspects",  # its ready() imports signals, sinks, tasks and its filters, as in the LMS
        ],
        DATABASES={"default": database_settings(args.database_url)},
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        USE_TZ=True,
        TIME_ZONE="UTC",  # as edx-platform
        SECRET_KEY="peer-bench-not-secret",
        FEATURES={},  # read by the peer's get_ccx_courses (CUSTOM_COURSES_EDX off)
        EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG=backend,
        EVENT_SINK_CLICKHOUSE_PII_MODELS=peer.EVENT_SINK_CLICKHOUSE_PII_MODELS,
        # The peer's own model config, with the scenario's models pointed at the stand-ins (at
        # the platform's module paths but for CourseOverview) and only the models that exist here.
        EVENT_SINK_CLICKHOUSE_MODEL_CONFIG={"auth_user": peer.EVENT_SINK_CLICKHOUSE_MODEL_CONFIG["auth_user"],
                                            **models},
        # Each sink's is_enabled(): the settings switch (no waffle flag lookup).
        **{f"EVENT_SINK_CLICKHOUSE_{name.upper()}_ENABLED": True for name in models},
        OPENEDX_TELEMETRY=[],  # no monitoring backend (the platform's default is New Relic)
        CELERY_BROKER_URL=args.redis_url,
        CELERY_TASK_DEFAULT_QUEUE="edx.lms.core.default",  # the LMS's default queue
        CELERY_TASK_SERIALIZER="json",
    )
    # The peer's utils.get_model logs an error for each model its modules look up at import
    # and that is not configured here (user_profile, external_id, tags...).
    utils_log = logging.getLogger("platform_plugin_aspects.utils")
    utils_log.setLevel(logging.CRITICAL)
    try:
        django.setup()
    finally:
        utils_log.setLevel(logging.NOTSET)

    from celery import Celery

    # As the LMS's celery app: settings from Django's, CELERY_ namespace; shared_task binds to it.
    app = Celery("proj")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.set_current()
    app.set_default()
    return app


def prepare_database():
    """
    The platform's tables: auth's by its migrations (its users emptied), the stand-ins'
    dropped and made again from the models at every run, so a table left by an older or
    interrupted run (missing an index) is never measured. Raw statements: no signals.
    """
    from common.djangoapps.student.models import CourseEnrollment, UserProfile
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    standins = (CourseEnrollment, UserProfile)  # children of auth_user
    existing = set(connection.introspection.table_names())
    users = get_user_model()._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":
            cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
        for model in standins:
            if model._meta.db_table in existing:
                cursor.execute(f"DROP TABLE {connection.ops.quote_name(model._meta.db_table)}")
        # The backfill scenario's external ids (backfill.py) point to the users emptied below.
        if "external_user_ids_externalid" in existing and connection.vendor != "postgresql":
            cursor.execute("DELETE FROM external_user_ids_externalid")
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {users} RESTART IDENTITY CASCADE")
        elif connection.vendor == "mysql":
            cursor.execute(f"TRUNCATE TABLE {users}")
            cursor.execute("SET FOREIGN_KEY_CHECKS = 1")
        else:
            cursor.execute(f"DELETE FROM {users}")
    with connection.schema_editor() as editor:
        for model in reversed(standins):
            editor.create_model(model)


def make_users(count):
    """`count` users with their profiles, as registration leaves them (bulk INSERTs, untimed)."""
    from common.djangoapps.student.models import UserProfile
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    user_model = get_user_model()
    now = timezone.now()
    user_model.objects.bulk_create(
        [user_model(username=f"bulk{index:06d}", email=f"bulk{index:06d}@example.com", date_joined=now)
         for index in range(count)], batch_size=1000)
    users = list(user_model.objects.filter(username__startswith="bulk").order_by("id"))
    UserProfile.objects.bulk_create([UserProfile(user=user, name=f"Learner {user.username}") for user in users],
                                    batch_size=1000)
    return list(user_model.objects.filter(username__startswith="bulk").select_related("profile").order_by("id"))


def event_data(enrollment):
    """The CourseEnrollmentData edx-platform's CourseEnrollment.update_enrollment and enroll send."""
    from openedx_events.learning.data import CourseData, CourseEnrollmentData, UserData, UserPersonalData

    user = enrollment.user
    return CourseEnrollmentData(
        user=UserData(id=user.id, is_active=user.is_active,
                      pii=UserPersonalData(username=user.username, email=user.email, name=user.profile.name)),
        course=CourseData(course_key=enrollment.course_id),
        mode=enrollment.mode,
        is_active=enrollment.is_active,
        creation_date=enrollment.created,
    )


def enroll(user, course_key, mode="audit"):
    """
    edx-platform's CourseEnrollment.enroll: get_or_create_enrollment, update_enrollment (the
    row saved, COURSE_ENROLLMENT_CHANGED), send_signal(EnrollStatusChange.enroll)
    (ENROLL_STATUS_CHANGE, which the peer listens to), then COURSE_ENROLLMENT_CREATED.
    """
    from common.djangoapps.student.models import CourseEnrollment
    from common.djangoapps.student.signals.signals import ENROLL_STATUS_CHANGE
    from openedx_events.learning.signals import COURSE_ENROLLMENT_CHANGED, COURSE_ENROLLMENT_CREATED

    enrollment, _ = CourseEnrollment.objects.get_or_create(user=user, course_id=course_key,
                                                           defaults={"mode": mode, "is_active": False})
    enrollment.is_active, enrollment.mode = True, mode
    enrollment.save()
    COURSE_ENROLLMENT_CHANGED.send_event(enrollment=event_data(enrollment))
    ENROLL_STATUS_CHANGE.send(sender=None, event="enroll", user=enrollment.user, mode=enrollment.mode,
                              course_id=enrollment.course_id, cost=None, currency=None)
    COURSE_ENROLLMENT_CREATED.send_event(enrollment=event_data(enrollment))
    return enrollment


def count_statements(work):
    from django.db import connection

    counter = StatementCounter()
    started = time.perf_counter()
    with connection.execute_wrapper(counter):
        work()
    counter.total_seconds = time.perf_counter() - started
    return counter


def count_enrollment_statements(users, course_key):
    from django.db import transaction

    def work():
        with transaction.atomic():  # the commit, with the peer's on_commit callbacks, inside the count
            for user in users:
                enroll(user, course_key)

    return count_statements(work)


def connect_peer():
    """What the LMS does at startup for every plugin app: connect its lms.djangoapp signal receivers."""
    from common.djangoapps.student.signals.signals import ENROLL_STATUS_CHANGE
    from edx_django_utils.plugins import connect_plugin_receivers

    connect_plugin_receivers("lms.djangoapp")
    assert ENROLL_STATUS_CHANGE.has_listeners(), "the peer's receiver is not connected to ENROLL_STATUS_CHANGE"


def disconnect_peer():
    from common.djangoapps.student.signals.signals import ENROLL_STATUS_CHANGE

    assert ENROLL_STATUS_CHANGE.disconnect(dispatch_uid=RECEIVER_UID)


def queued_messages(redis, queue, count):
    """The oldest `count` messages of `queue`, decoded as a worker decodes them: (task name, args, kwargs)."""
    messages = []
    for raw in reversed(redis.lrange(queue, -count, -1)):  # LPUSHed: the oldest are at the end
        message = json.loads(raw)
        assert message["properties"]["body_encoding"] == "base64", message["properties"]
        args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        messages.append((message["headers"]["task"], args, kwargs))
    return messages


def run_tasks(app, messages):
    """Each task body, synchronously in this process, as a worker runs it (Task.__call__); ms per task."""
    samples = []
    for name, args, kwargs in messages:
        task = app.tasks[name]
        started = time.perf_counter()
        outcome = task(*args, **kwargs)
        samples.append((time.perf_counter() - started) * 1000)
        assert outcome == "Dumped", outcome
    return samples


def peak_rss_mb():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.scenario == "dump_object":  # backfill's child: one command, nothing else
        configure_django(args)
        with contextlib.redirect_stdout(sys.stderr):
            result = backfill.dump_object(args)
        print(json.dumps(result))
        return 0
    clickhouse = ClickHouse(args.url, args.user, args.password)
    server_version = clickhouse.query("SELECT version()").strip()
    if args.scenario != "bulk_enroll":
        clickhouse.query(f"DROP DATABASE IF EXISTS `{args.database}`")  # every row counted after is this run's
    if args.create_schema:
        create_schema(args, clickhouse)
    if args.scenario != "bulk_enroll":
        scenario = backfill if args.scenario == "backfill" else course_publish
        try:
            with contextlib.redirect_stdout(sys.stderr):
                configure_django(args)
                result = scenario.run(args, clickhouse)
        finally:
            if args.drop_database:
                clickhouse.query(f"DROP DATABASE IF EXISTS `{args.database}`")
        result.update(server_version=server_version, clickhouse_database=args.database,
                      bool_as_string=args.bool_as_string)
        print(json.dumps(result))
        # A publish that failed fails (as run_peer.py); a backfill's failures are in its JSON (error, held).
        return 1 if result.get("error") and args.scenario == "publish" else 0

    import redis as redis_client

    broker = redis_client.Redis.from_url(args.redis_url)
    broker.flushdb()
    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = measure(args, configure_django(args), broker, clickhouse)
    finally:
        broker.flushdb()
        if args.drop_database:
            clickhouse.query(f"DROP DATABASE IF EXISTS `{args.database}`")
    result.update(server_version=server_version, clickhouse_database=args.database, bool_as_string=args.bool_as_string)
    print(json.dumps(result))
    return 0


def measure(args, app, broker, clickhouse):
    from django.db import connection, transaction

    prepare_database()
    users = make_users(args.enrollments)
    queue = app.conf.task_default_queue
    run = f"{os.getpid()}{int(time.time())}"
    n = len(users)

    # Before the peer's receiver is connected: an untimed tenth as a warm-up, then the platform's own part.
    enroll_all(users[:max(1, n // 10)], f"course-v1:BenchX+Warm{run}+R1", enroll, transaction.atomic)
    platform = enroll_all(users, f"course-v1:BenchX+Base{run}+R1", enroll, transaction.atomic)
    connect_peer()
    peer = enroll_all(users, f"course-v1:BenchX+Bulk{run}+R1", enroll, transaction.atomic)
    rss_after_transaction = peak_rss_mb()
    published = broker.llen(queue)
    assert published == n, (published, n)

    messages = queued_messages(broker, queue, args.tasks + args.count_tasks)
    before = clickhouse.count(args.database, TABLE) or 0
    gc.collect()
    task_samples = run_tasks(app, messages[:args.tasks])
    written = (clickhouse.count(args.database, TABLE) or 0) - before
    task_statements = count_statements(lambda: run_tasks(app, messages[args.tasks:]))

    counted = users[:args.count_enrollments]
    statements = count_enrollment_statements(counted, f"course-v1:BenchX+Count{run}+R1")
    disconnect_peer()
    platform_statements = count_enrollment_statements(counted, f"course-v1:BenchX+CountBase{run}+R1")

    mean_task = statistics.fmean(task_samples)
    return {
        "peer": "platform-plugin-aspects 2.1.0",
        "database": connection.vendor,
        "enrollments": n,
        **figures(n, peer, platform, statements, platform_statements, counted),
        "commit_ms_per_enrollment": round((peer["commit_ms"] - platform["commit_ms"]) / n, 4),
        "messages_published": published,
        "tasks": len(task_samples),
        "task_samples_ms": [round(sample, 3) for sample in task_samples],
        "task_median_ms": round(statistics.median(task_samples), 3),
        "task_mean_ms": round(mean_task, 3),
        "task_min_ms": round(min(task_samples), 3),
        "task_max_ms": round(max(task_samples), 3),
        "task_rows_per_second": round(1000 / mean_task),
        "task_statements": round(task_statements.count / max(1, args.count_tasks), 2),
        "task_statements_by_kind": per_item(task_statements.kinds, max(1, args.count_tasks)),
        "task_http_requests": 1,  # one POST per task (sinks/base_sink.py send_item), a new requests.Session each
        "task_rows_written": written,
        "task_rows_dropped": len(task_samples) - written,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_transaction_mb": rss_after_transaction,
    }


if __name__ == "__main__":
    sys.exit(main())
