"""
Our side of the learner scenarios (issue 19), run by bench/ours.py in its own process, with
the standalone project's settings (the stand-ins of the platform's tables) on a benchmark
database and the ClickHouse test server over HTTP:

    learners_generate  N users with a profile and an external id, 3N enrollments, made
                       before install (bench/learners.py: bulk inserts, no signal; reused
                       when the database holds them already), untimed
    learners_floor     the floor: each table read with the ORM in chunks of 50,000 (by key,
                       select_related), each row encoded as a JSONEachRow line by the
                       project's own serializers (clickhouse_outbox/serializers/users.py),
                       one plain INSERT per chunk (no compression); until ClickHouse holds
                       every row
    learners_backfill  ours as an operator runs it, each command in a subprocess of its own
                       (`manage.py outbox_requeue --all --producer ... --drain`, or
                       `dump_data_to_clickhouse --object ... --drain` with every model or one
                       per model; --send after:
                       without --drain, then `outbox_drain --until-empty`; or the admin's
                       dump form with a celery worker and beat): wall time, peak RSS (the
                       child's own, os.wait4) of each; until ClickHouse holds every row
    learners_surfaces  after a backfill, one --page: the admin's "Learners and tags" change
                       list (as it opens, filtered by producer, by state, a search) or one
                       subject's page through Django's test client, or `outbox_status`, in ms
    learners_verify    after a backfill: `outbox_verify --producer NAME`, timed (learner content
                       compared too: reconcile/content.py)
    learners_sweep     after a backfill: the sweep of the three learner tables (reconcile/sweep.py,
                       what the beat entry runs): the first (every range compared row by row with
                       the snapshots), a quiet one (nothing changed: what each run costs), and one
                       after --changed profiles were changed by QuerySet.update() (found, queued)
    learners_settle    wait until ClickHouse merges nothing of the benchmark's database (before the surfaces)
    learners_drop      the learners, the outbox and the ClickHouse database emptied
    capture            the statements the plugin adds to the platform's transaction per
                       learner change, by kind, counted with the producers on and off

Every command prints one JSON object.
"""

import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.db.models import Count

from bench import learners
from bench.transactions import StatementCounter, per_item
from clickhouse_outbox import conf
from clickhouse_outbox.clickhouse.backends import get_backend
from clickhouse_outbox.clickhouse.backends.base import qualified_name, quote_identifier
from clickhouse_outbox.clickhouse.schema import create_schema
from clickhouse_outbox.clickhouse.tables import COURSE_ENROLLMENT, EXTERNAL_ID, USER_PROFILE
from clickhouse_outbox.models import (
    Batch,
    DumpChunk,
    DumpCursor,
    DumpJob,
    DumpJobItem,
    OutboxEntry,
    Snapshot,
    SweptRange,
    Verdict,
)
from clickhouse_outbox.serializers.users import enrollment_row, external_id_row, profile_row
from outbox_project.platform.models import CourseEnrollment, ExternalId, ExternalIdType, UserProfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: producer: (model, its ClickHouse table, the row's serializer, what the query reads along)
PRODUCERS = {
    "user_profile": (UserProfile, USER_PROFILE, profile_row, ("user",)),
    "external_id": (ExternalId, EXTERNAL_ID, external_id_row, ("user", "external_id_type")),
    "course_enrollment": (CourseEnrollment, COURSE_ENROLLMENT, enrollment_row, ("user",)),
}
#: Each table's key: a row held twice under it is a duplicate, a key not held a missing row.
KEYS = {"user_profile": "id", "external_id": "external_user_id", "course_enrollment": "id"}
FLOOR_CHUNK = 50_000
#: The outbox's tables, children first.
OUTBOX_TABLES = [model._meta.db_table for model in (Verdict, DumpChunk, DumpCursor, DumpJobItem, DumpJob, OutboxEntry,
                                                    Batch, Snapshot, SweptRange)]


def empty_outbox():
    learners.empty_tables(connection, OUTBOX_TABLES)


def peak_rss_mb():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def log(message):
    print(message, file=sys.stderr, flush=True)


def fresh_clickhouse():
    """The benchmark's ClickHouse database dropped and made again (the learner tables empty)."""
    backend = get_backend()
    backend.command(f"DROP DATABASE IF EXISTS {quote_identifier(backend.database)}")
    create_schema(backend, tables=[table for _, table, _, _ in PRODUCERS.values()])
    return backend


def held(backend, users):
    """What ClickHouse holds of the learners' rows, table by table: rows, missing and duplicated."""
    expected = learners.expected_rows(users)
    report = {}
    for name, (_, table, _, _) in PRODUCERS.items():
        # toString: ClickHouse 18.16's uniqExact of a UUID column is quadratic (a million keys: minutes).
        row = backend.query(f"SELECT count() AS rows, uniqExact(toString({KEYS[name]})) AS distinct_rows "
                            f"FROM {qualified_name(backend.database, table.name)}")[0]
        rows, distinct = int(row["rows"]), int(row["distinct_rows"])
        report[name] = {"expected": expected[name], "rows": rows, "missing": expected[name] - distinct,
                        "duplicated": rows - distinct}
    return report


def complete(report):
    return all(r["missing"] == 0 and r["duplicated"] == 0 for r in report.values())


# -- generate / drop -----------------------------------------------------------------------


def generate(args):
    call_command("migrate", verbosity=0)
    result = learners.generate(connection, args.users, reuse=not args.no_reuse, log=log)
    return {**result, "users": args.users, "database": connection.vendor}


def drop(args):
    empty_outbox()  # first: dump jobs name the user who started them (the admin's dump form: --via admin)
    learners.empty(connection)
    backend = get_backend()
    backend.command(f"DROP DATABASE IF EXISTS {quote_identifier(backend.database)}")
    return {"dropped": True, "database": connection.vendor}


# -- the floor -----------------------------------------------------------------------------


def floor(args):
    """
    The least a backfill must do: read each table with the ORM in chunks of --chunk (by key,
    with what its row needs), encode each row as a JSONEachRow line, and POST one INSERT per
    chunk to ClickHouse (the same rows, the same server; no outbox, no retry, no bookkeeping).
    """
    import requests  # noqa: PLC0415

    backend = fresh_clickhouse()
    config = settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG
    session = requests.Session()
    session.auth = (config["username"], config["password"])
    url = config["url"]
    dump_id, when = "00000000-0000-4000-8000-000000000000", "2026-01-01 00:00:00.000000+00:00"
    encoders = {"serializers": None, "json": plain_row}
    encode = encoders[args.encoder]
    seconds, inserts = {}, 0
    started = time.perf_counter()
    for name, (model, table, serialize, related) in PRODUCERS.items():
        table_started = time.perf_counter()
        last = 0
        while True:
            chunk = list(model.objects.select_related(*related).filter(pk__gt=last).order_by("pk")[:args.chunk])
            if not chunk:
                break
            last = chunk[-1].pk
            if encode is None:
                body = b"".join(serialize(row, dump_id=dump_id, time_last_dumped=when) for row in chunk)
            else:
                body = b"".join(encode(name, row, dump_id, when) for row in chunk)
            query = f"INSERT INTO {qualified_name(backend.database, table.name)} FORMAT JSONEachRow"
            response = session.post(url, params={"query": query}, data=body, timeout=600)
            if response.status_code != 200:
                raise SystemExit(f"floor: ClickHouse answered {response.status_code}: {response.text[:500]}")
            inserts += 1
        seconds[name] = round(time.perf_counter() - table_started, 3)
    elapsed = time.perf_counter() - started
    report = held(backend, args.users)
    rows = sum(r["expected"] for r in report.values())
    return {
        "users": args.users, "encoder": args.encoder, "chunk": args.chunk, "seconds": round(elapsed, 3),
        "seconds_by_producer": seconds, "inserts": inserts, "rows": rows, "rows_per_second": round(rows / elapsed),
        "us_per_row": round(elapsed * 1e6 / rows, 2), "held": report, "complete": complete(report),
        "peak_rss_mb": peak_rss_mb(), "database": connection.vendor,
    }


def plain_row(name, row, dump_id, when):
    """A row as one json.dumps of its fields (the floor without the project's serializers, --encoder json)."""
    if name == "user_profile":
        user = row.user
        values = {"id": row.id, "user_id": row.user_id, "name": row.name, "username": user.username,
                  "email": user.email, **{field: "" if getattr(row, field) is None else str(getattr(row, field))
                                          for field in ("meta", "courseware", "language", "location",
                                                        "year_of_birth", "gender", "level_of_education",
                                                        "mailing_address", "city", "country", "state", "goals",
                                                        "bio", "profile_image_uploaded_at", "phone_number")}}
    elif name == "external_id":
        values = {"external_user_id": str(row.external_user_id), "external_id_type": row.external_id_type.name,
                  "username": row.user.username, "user_id": row.user_id}
    else:
        values = {"id": row.id, "course_key": str(row.course_id), "created": row.created.isoformat(),
                  "is_active": row.is_active, "mode": row.mode, "username": row.user.username,
                  "user_id": row.user_id}
    return (json.dumps({**values, "dump_id": dump_id, "time_last_dumped": when}) + "\n").encode()


# -- ours, as an operator runs it ----------------------------------------------------------


def manage(*arguments):
    """`manage.py ARGUMENTS` in a subprocess: its wall time, exit status, peak RSS (its own) and output tail."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(  # noqa: S603 (the project's own manage.py)
            [sys.executable, os.path.join(REPO, "manage.py"), *arguments], cwd=REPO, stdout=out, stderr=err,
            env=os.environ.copy())
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        lines = out.read().decode(errors="replace").splitlines()
        errors = err.read().decode(errors="replace").splitlines()
    return {
        "command": " ".join(arguments), "seconds": round(elapsed, 3), "exit_status": process.returncode,
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "output_lines": len(lines),
        "last_lines": lines[-3:], "stderr": errors[-5:],
    }


def backfill(args):
    """
    Ours from an empty outbox and empty ClickHouse tables until ClickHouse holds every row:
    --via requeue: `outbox_requeue --all --producer user_profile --producer external_id
    --producer course_enrollment`; --via dump_data: `dump_data_to_clickhouse --object X
    --object Y ...`, one command; --via dump_data_each: `dump_data_to_clickhouse --object X` for
    each, as the peer's is run; --via admin: the admin's dump form (`admin_form`). --send alongside
    (the default): each with --drain, its chunks sent as they are queued; --send after: then
    `outbox_drain --until-empty`. Each command a subprocess.
    """
    empty_outbox()
    backend = fresh_clickhouse()
    if args.via == "admin":
        queue = []
    elif args.via == "requeue":
        queue = [["outbox_requeue", "--all", *[part for name in PRODUCERS for part in ("--producer", name)]]]
    elif args.via == "dump_data":
        queue = [["dump_data_to_clickhouse", *[part for name in PRODUCERS for part in ("--object", name)]]]
    else:
        queue = [["dump_data_to_clickhouse", "--object", name] for name in PRODUCERS]
    alongside = args.send == "alongside" or args.via == "admin"
    if alongside:
        queue = [[*command, "--drain", "--timeout", str(args.timeout)] for command in queue]
    steps = [manage(*command) for command in queue] if queue else [admin_form(args.timeout)]
    if not alongside:
        steps.append(manage("outbox_drain", "--until-empty", "--timeout", str(args.timeout)))
    report = held(backend, args.users)
    rows = sum(r["expected"] for r in report.values())
    seconds = sum(step["seconds"] for step in steps)
    snapshots = Snapshot.objects.filter(producer__in=list(PRODUCERS)).count()
    # What each command's process costs before it works (Python, Django, the apps): a no-op
    # command's wall time. Inside `seconds`, as an operator waits for it; the floor has none.
    startup = manage("shell", "-c", "pass")["seconds"]
    return {
        "users": args.users, "via": args.via, "steps": steps, "seconds": round(seconds, 3),
        "send": args.send,
        "queue_seconds": None if alongside else round(sum(step["seconds"] for step in steps[:-1]), 3),
        "drain_seconds": None if alongside else steps[-1]["seconds"], "rows": rows, "rows_per_second": round(rows / seconds),
        "us_per_row": round(seconds * 1e6 / rows, 2), "held": report, "complete": complete(report),
        "failed_steps": [step["command"] for step in steps if step["exit_status"]],
        "startup_seconds_each": startup, "snapshots": snapshots, "peak_rss_mb": max(step["peak_rss_mb"] for step in steps),
        "peak_rss_mb_by_step": {step["command"].split()[0] + (f" {step['command'].split()[2]}" if
                                args.via == "dump_data_each" else ""): step["peak_rss_mb"] for step in steps},
        "database": connection.vendor,
    }


#: The admin's way (learners_backfill --via admin): celery's broker, a Redis database of the benchmark's own (not the
#: celery tests' 13, tests/processes.py: a benchmark beside them took their dump task, and they empty theirs).
CELERY_BROKER = os.environ.get("BENCH_CELERY_BROKER_URL", "redis://127.0.0.1:6379/12")


def staff_client():
    """Django's test client, logged in as a superuser (the admin's pages, in this process)."""
    from django.test import Client  # noqa: PLC0415

    staff, _ = get_user_model().objects.get_or_create(username="bench-admin", defaults={
        "email": "bench-admin@example.com", "is_staff": True, "is_superuser": True})
    client = Client(SERVER_NAME="localhost")
    client.force_login(staff)
    return client


def celery(log, *arguments):
    """`celery -A outbox_project ARGUMENTS` with the benchmark's broker, its output to `log`."""
    return subprocess.Popen(  # noqa: S603 (the project's own celery app)
        [os.path.join(os.path.dirname(sys.executable), "celery"), "-A", "outbox_project", *arguments], cwd=REPO,
        env=dict(os.environ, CELERY_BROKER_URL=CELERY_BROKER), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)


def wait_for(path, text, processes, timeout=120):
    deadline = time.monotonic() + timeout
    while text not in open(path, errors="replace").read():
        if any(process.poll() is not None for process in processes) or time.monotonic() > deadline:
            raise SystemExit(f"admin_form: celery did not log {text!r}:\n{open(path, errors='replace').read()[-3000:]}")
        time.sleep(0.2)


def tree_peak_rss_mb(pid):
    """The largest peak RSS (VmHWM) among process `pid` and its children (a prefork worker's pool)."""
    pids = [pid]
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        pids += [int(child) for child in children.read().split()]
    peaks = []
    for each in pids:
        with open(f"/proc/{each}/status") as status:
            peaks += [int(line.split()[1]) for line in status if line.startswith("VmHWM:")]
    return round(max(peaks) / 1024, 1)


def admin_form(timeout):
    """
    The admin's "Start a full dump" of the three learner producers, posted by a superuser
    (Django's test client, in this process) with a celery worker (prefork, 2 processes: the
    dump job's task and the drain's) and celery beat (django-celery-beat, the drain task every
    CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS) running, as an operator's site has them: from the
    POST until the job is done and nothing is left to send. The worker and beat start first,
    untimed; the broker's database is emptied before and after.
    """
    import redis  # noqa: PLC0415
    from django.urls import reverse  # noqa: PLC0415

    from clickhouse_outbox.outbox.drain import backlog  # noqa: PLC0415
    from outbox_project import celery_app  # noqa: PLC0415

    celery_app.conf.broker_url = CELERY_BROKER  # the form's dispatch goes to the worker's broker
    broker = redis.Redis.from_url(CELERY_BROKER)
    broker.flushdb()
    client = staff_client()
    with tempfile.TemporaryDirectory() as folder:
        worker_log, beat_log = os.path.join(folder, "worker.log"), os.path.join(folder, "beat.log")
        with open(worker_log, "wb") as out_worker, open(beat_log, "wb") as out_beat:
            worker = celery(out_worker, "worker", "-P", "prefork", "-c", "2", "-l", "info", "--without-mingle",
                            "--without-gossip", "-n", f"bench-{os.getpid()}@%h")
            beat = celery(out_beat, "beat", "-S", "django_celery_beat.schedulers:DatabaseScheduler", "-l", "info",
                          f"--pidfile={os.path.join(folder, 'beat.pid')}")
            try:
                wait_for(worker_log, " ready.", [worker, beat])
                wait_for(beat_log, "Sending due task clickhouse_outbox.drain", [worker, beat])
                started = time.perf_counter()
                response = client.post(reverse("admin:clickhouse_outbox_dumpjob_start"),
                                       {"producers": list(PRODUCERS), "scope": DumpJob.Scope.ALL})
                if response.status_code != 302:
                    raise SystemExit(f"admin_form: the form answered {response.status_code}")
                job = DumpJob.objects.order_by("-id").first()
                deadline = time.monotonic() + timeout
                while True:
                    job.refresh_from_db()
                    left = backlog()
                    done = not job.active and not (left["pending_entries"] or left["open_batches"])
                    if done or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                seconds = time.perf_counter() - started
                peak = tree_peak_rss_mb(worker.pid)
            finally:
                for process in (beat, worker):
                    process.terminate()
                for process in (beat, worker):
                    try:
                        process.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        os.killpg(process.pid, 9)
                        process.wait()
                broker.flushdb()
        tail = open(worker_log, errors="replace").read().splitlines()[-3:]
    return {
        "command": "admin dump form (celery worker -c 2 and beat)", "seconds": round(seconds, 3),
        "exit_status": 0 if job.status == DumpJob.Status.DONE and done else 1, "peak_rss_mb": peak,
        "job_status": job.status, "drain_interval_secs": conf.drain_interval_secs(), "last_lines": tail,
    }


# -- the operators' surfaces ---------------------------------------------------------------


def settle(args):
    """
    Wait (at most --timeout seconds) until ClickHouse merges no part of the benchmark's
    database: after a backfill the test server merges the new parts on the same two cores as
    the admin's pages, where a site's ClickHouse runs on machines of its own.
    """
    backend = get_backend()
    started = time.perf_counter()
    merging = None
    while time.perf_counter() - started < args.timeout:
        rows = backend.query(f"SELECT count() AS n FROM system.merges WHERE database = '{backend.database}'")
        merging = int(rows[0]["n"])
        if not merging:
            break
        time.sleep(1)
    return {"waited_seconds": round(time.perf_counter() - started, 1), "merges_left": merging,
            "load_average": os.getloadavg()}


#: The operators' surfaces (learners_surfaces --page): the admin's pages, and the status command.
SURFACES = ("learners_and_tags", "filtered_by_producer", "filtered_by_state", "searched", "one_subject",
            "outbox_status")
#: A sample slower than this is not repeated (the goal is under a second; a slow page is slow once).
SLOW_MS = 2_000


def timed(work, repeat):
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1000)
        if samples[-1] > SLOW_MS:
            break
    return {"first_ms": round(samples[0], 1), "median_ms": round(statistics.median(samples), 1),
            "max_ms": round(max(samples), 1), "samples_ms": [round(s, 1) for s in samples]}


def surfaces(args):
    """
    One of what staff and operators open after the backfill (--page), --repeat times (the first
    is a cold open; a sample over SLOW_MS is not repeated), in this process: the admin's
    "Learners and tags" change list as it opens (its summary and counts), filtered by producer,
    by delivery state, searched for one subject; one subject's page (through Django's test
    client, logged in as a superuser); or `outbox_status --json` (call_command: the command's
    work without Python's and Django's start, which `outbox_status_command` adds).
    """
    from django.urls import reverse  # noqa: PLC0415

    if args.page == "outbox_status":
        def status():
            try:
                call_command("outbox_status", "--json", stdout=io.StringIO())
            except CommandError:  # unhealthy is an answer too: it was timed
                pass

        result = timed(status, args.repeat)
        command = manage("outbox_status", "--json")  # as an operator runs it: Python and Django start too
        result["command_seconds"] = command["seconds"]
        return {"users": args.users, "page": args.page, **result, "peak_rss_mb": peak_rss_mb(),
                "database": connection.vendor}
    client = staff_client()
    changelist = reverse("admin:clickhouse_outbox_subjectdelivery_changelist")
    subject = (Snapshot.objects.filter(producer="user_profile").order_by("-id")
               .values_list("pk", "subject").first())
    if subject is None:
        held = dict(Snapshot.objects.values_list("producer").annotate(n=Count("id")).order_by())
        jobs = list(DumpJob.objects.values_list("id", "action", "status"))
        raise SystemExit(f"surfaces: no user_profile snapshot (snapshots by producer: {held}; jobs: {jobs}; "
                         f"database: {connection.settings_dict['NAME']}); run learners_backfill first")
    url = {
        "learners_and_tags": changelist,
        "filtered_by_producer": f"{changelist}?producer=course_enrollment",
        "filtered_by_state": f"{changelist}?state=delivered",
        "searched": f"{changelist}?q={subject[1]}",
        "one_subject": reverse("admin:clickhouse_outbox_subjectdelivery_change", args=[subject[0]]),
    }[args.page]

    def get():
        response = client.get(url)
        if response.status_code != 200:
            raise SystemExit(f"surfaces: {args.page} {url} answered {response.status_code}")

    return {"users": args.users, "page": args.page, "url": url, **timed(get, args.repeat),
            "snapshots": Snapshot.objects.count(), "peak_rss_mb": peak_rss_mb(), "database": connection.vendor}


# -- verify --------------------------------------------------------------------------------


def verify(args):
    """`outbox_verify --producer NAME --json` over the backfilled site, in this process, timed."""
    out = io.StringIO()
    started = time.perf_counter()
    exit_status = 0
    try:
        call_command("outbox_verify", "--producer", args.producer, "--json", stdout=out)
    except CommandError as exc:
        exit_status = exc.returncode
    seconds = time.perf_counter() - started
    report = json.loads(out.getvalue()) if out.getvalue().strip() else {}
    checked = report.get("checked", 0)
    return {
        "users": args.users, "producer": args.producer, "seconds": round(seconds, 3), "checked": checked,
        "subjects_per_second": round(checked / seconds) if seconds else None, "exit_status": exit_status,
        "counts": {kind: n for kind, n in report.get("counts", {}).items() if n},
        "peak_rss_mb": peak_rss_mb(), "database": connection.vendor,
    }


# -- sweep ---------------------------------------------------------------------------------


def sweep_timed(args):
    """
    The sweep of the learner tables over the backfilled site, in this process as the beat
    task runs it (no time limit): the first after the backfill (which recorded the ranges it
    queued: nothing to queue), a quiet one, and one after --changed profiles (spread over the
    table) were changed by QuerySet.update().
    """
    from clickhouse_outbox.reconcile.sweep import sweep  # noqa: PLC0415

    names = args.sweep_producers.split(",")

    def run():
        started = time.perf_counter()
        results = sweep(names)
        seconds = time.perf_counter() - started
        rows = sum(result.rows for result in results)
        return {"seconds": round(seconds, 3), "rows": rows, "rows_per_second": round(rows / seconds) if seconds else None,
                "ranges": sum(result.ranges for result in results),
                "compared": sum(result.compared for result in results),
                "queued": sum(result.queued for result in results),
                "by_producer": {result.producer: result.as_dict() for result in results}}

    first = run()
    quiet = run()
    total = UserProfile.objects.count()
    step = max(1, total // max(1, args.changed))
    ids = list(UserProfile.objects.order_by("pk").values_list("pk", flat=True)[::step][:args.changed])
    for start in range(0, len(ids), 500):
        UserProfile.objects.filter(pk__in=ids[start:start + 500]).update(city="Swept")
    changed = run()
    return {"users": args.users, "chunk": conf.sweep_chunk(), "first": first, "quiet": quiet,
            "changed_by_update": len(ids), "after_update": changed, "found_all": changed["queued"] == len(ids),
            "peak_rss_mb": peak_rss_mb(), "database": connection.vendor}


# -- capture: statements per learner change ------------------------------------------------


def producers_on(value):
    for name in PRODUCERS:
        setattr(settings, f"CLICKHOUSE_OUTBOX_{name.upper()}_ENABLED", value)


def capture(args):
    """
    For each kind of learner change, --changes of them, each in its own transaction as a
    request makes it (ATOMIC_REQUESTS): counted with the producers on, then the same kind of
    change with them off (the platform's own statements). Untimed but for the driver's time.
    """
    from tests.learners import change_enrollment, enroll  # noqa: PLC0415 (as edx-platform does them)

    settings.CLICKHOUSE_OUTBOX_SNAPSHOT_AT = args.snapshot_at
    empty_outbox()
    learners.empty(connection)
    n = args.changes
    user_model = get_user_model()
    # Users with their profiles, made once (no signals): two sets, the producers on and off.
    user_model.objects.bulk_create([user_model(username=f"cap{index:05d}", email=f"cap{index:05d}@example.com")
                                    for index in range(2 * n)], batch_size=1000)
    users = list(user_model.objects.filter(username__startswith="cap").order_by("id"))
    UserProfile.objects.bulk_create([UserProfile(user=user, name=f"Learner {user.username}") for user in users],
                                    batch_size=1000)
    users = list(user_model.objects.filter(username__startswith="cap").select_related("profile").order_by("id"))
    id_type = ExternalIdType.objects.create(name="lti")
    halves = {"on": users[:n], "off": users[n:]}

    def kinds(run):
        return {
            "enrollment_created": lambda user: enroll(user, f"course-v1:CapX+New{run}+R1"),
            "enrollment_mode_changed": lambda user: change_enrollment(
                CourseEnrollment.objects.get(user=user, course_id=f"course-v1:CapX+New{run}+R1"), mode="verified"),
            "profile_saved": lambda user: save_profile(user.profile),
            "email_changed": lambda user: change_email(user),
            "external_id_created": lambda user: ExternalId.objects.create(user=user, external_id_type=id_type),
        }

    results = {}
    for side, on in (("on", True), ("off", False)):
        producers_on(on)
        for kind, change in kinds(side).items():
            counter = StatementCounter()
            started = time.perf_counter()
            with connection.execute_wrapper(counter):
                for user in halves[side]:
                    with transaction.atomic():
                        change(user)
            elapsed = time.perf_counter() - started
            results.setdefault(kind, {})[side] = {
                "statements": round(counter.count / n, 2), "ms": round(elapsed * 1000 / n, 3),
                "by_kind": per_item(counter.kinds, n)}
    producers_on(True)
    figures = {}
    for kind, sides in results.items():
        figures[kind] = {
            "with_plugin": sides["on"]["statements"], "platform": sides["off"]["statements"],
            "plugin_adds": round(sides["on"]["statements"] - sides["off"]["statements"], 2),
            "ms_with_plugin": sides["on"]["ms"], "ms_platform": sides["off"]["ms"],
            "plugin_statements_by_kind": {k: round(v - sides["off"]["by_kind"].get(k, 0), 2)
                                          for k, v in sides["on"]["by_kind"].items()
                                          if round(v - sides["off"]["by_kind"].get(k, 0), 2)},
        }
    empty_outbox()
    learners.empty_tables(connection, [CourseEnrollment._meta.db_table, ExternalId._meta.db_table, ExternalIdType._meta.db_table,
                  UserProfile._meta.db_table, user_model._meta.db_table])
    return {"changes": n, "snapshot_at": args.snapshot_at, "kinds": figures,
            "most_added": max(f["plugin_adds"] for f in figures.values()),
            "peak_rss_mb": peak_rss_mb(), "database": connection.vendor}


def save_profile(profile):
    """A learner edits their profile (the account settings page saves it)."""
    profile.city = "Paris" if profile.city != "Paris" else "Lyon"
    profile.save()


def change_email(user):
    """A learner's email changed (confirmed): the user saved."""
    user.email = f"new-{user.email}" if not user.email.startswith("new-") else user.email[4:]
    user.save()


HANDLERS = {"learners_generate": generate, "learners_floor": floor, "learners_backfill": backfill,
            "learners_surfaces": surfaces, "learners_verify": verify, "learners_sweep": sweep_timed,
            "learners_drop": drop, "learners_settle": settle, "capture": capture}


def add_arguments(parser):
    parser.add_argument("--users", type=int, default=10_000, help="learners_*: users on the site")
    parser.add_argument("--no-reuse", action="store_true", help="learners_generate: make them again even if present")
    parser.add_argument("--chunk", type=int, default=FLOOR_CHUNK, help="learners_floor: rows read and sent at a time")
    parser.add_argument("--encoder", choices=["serializers", "json"], default="serializers",
                        help="learners_floor: the project's serializers, or one json.dumps per row")
    parser.add_argument("--via", choices=["requeue", "dump_data", "dump_data_each", "admin"], default="requeue",
                        help="learners_backfill: outbox_requeue --all, dump_data_to_clickhouse with every --object, "
                             "dump_data_to_clickhouse per model, or the admin's dump form with a celery worker and beat")
    parser.add_argument("--send", choices=["alongside", "after"], default="alongside",
                        help="learners_backfill: each command with --drain (its chunks sent as they are queued), or "
                             "outbox_drain --until-empty after them")
    parser.add_argument("--timeout", type=int, default=36_000,
                        help="learners_backfill: the drain's --timeout; learners_settle: the longest wait")
    parser.add_argument("--producer", default="user_profile", help="learners_verify: the producer verified")
    parser.add_argument("--changes", type=int, default=200, help="capture: changes of each kind counted")
    parser.add_argument("--changed", type=int, default=1000,
                        help="learners_sweep: profiles changed by QuerySet.update() before the last sweep")
    parser.add_argument("--sweep-producers", default=",".join(PRODUCERS),
                        help="learners_sweep: the producers swept, comma-separated (default: the three learner ones)")
    parser.add_argument("--page", choices=SURFACES, default="learners_and_tags",
                        help="learners_surfaces: the page (or outbox_status) timed")
