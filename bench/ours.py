"""
This project's side of `make bench`: one scenario per process, so peak RSS is the
scenario's own. bench/run.py runs it with the standalone project's settings, a DATABASE_URL
of a benchmark database and CLICKHOUSE_* of the ClickHouse test server; it prints one JSON
object on stdout.

    reset        migrate, empty the outbox tables, recreate the ClickHouse tables
    publish      one course of --blocks blocks taken as a publish takes it, --repeat times:
                 read (from memory), serialize, write to the outbox and commit
    backlog      queue about --rows rows (courses of --blocks blocks) and leave them pending
    drain        drain what is queued to ClickHouse over HTTP until nothing is left
    full_dump    --courses courses of --blocks blocks, from memory or from OLX exports on disk
                 (--source olx), dumped by a dump job with --workers processes while a drainer
                 process sends the rows: from the job's start to the last row delivered
    bulk_enroll  --enrollments users made (untimed), then ONE transaction that enrolls each of
                 them in one course as edx-platform does (tests/learners.enroll: the row saved,
                 COURSE_ENROLLMENT_CHANGED then COURSE_ENROLLMENT_CREATED sent): timed whole,
                 with the same transaction with the producer off as the platform's own part
                 (after an untimed warm-up of a tenth of the users, producer off);
                 then the drain of those rows to ClickHouse (rows/s); then, untimed, the
                 statements of --count-enrollments enrollments, with the producer on and off
    verify       a healthy site: --courses generated courses of --blocks blocks dumped and
                 delivered (untimed), then `outbox_verify --producer course_structure` over
                 all of them, timed, with its ClickHouse queries and database statements counted
    kill_recovery  --repeat times: a course queued (three batches); a drainer process
                 (`manage.py outbox_drain --until-empty`) whose first INSERT is held by a proxy
                 that keeps ClickHouse's answer from it (tests/proxy.py); a second drainer that
                 sends the two other batches, then waits (it looks again every second); the
                 first SIGKILLed: the time from the SIGKILL to the held batch sent by the
                 second (polled every 2 ms), with the default 300-second lease, and to the
                 database showing the dead drainer's lock free
    learners_*, capture
                 issue 19's learner scenarios: bench/ours_learners.py (its docstring)
"""

import argparse
import contextlib
import io
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outbox_project.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench import learners, ours_learners  # noqa: E402
from bench.ours_learners import empty_outbox  # noqa: E402
from bench.transactions import StatementCounter, enroll_all, figures  # noqa: E402
from clickhouse_outbox.clickhouse.backends import get_backend  # noqa: E402
from clickhouse_outbox.clickhouse.backends.base import qualified_name, quote_identifier  # noqa: E402
from clickhouse_outbox.clickhouse.schema import create_schema  # noqa: E402
from clickhouse_outbox.clickhouse.tables import (  # noqa: E402
    COURSE_BLOCKS,
    COURSE_ENROLLMENT,
    COURSE_OVERVIEWS,
    COURSE_RELATIONSHIPS,
)
from clickhouse_outbox import conf  # noqa: E402
from clickhouse_outbox.dumps.jobs import start_job  # noqa: E402
from clickhouse_outbox.dumps.run import run_job  # noqa: E402
from clickhouse_outbox.clickhouse.backends.http import HttpBackend  # noqa: E402
from clickhouse_outbox.models import Batch, DumpJob, DumpJobItem, OutboxEntry, Snapshot  # noqa: E402
from clickhouse_outbox.outbox import drain as drain_module  # noqa: E402
from clickhouse_outbox.outbox.drain import backlog, drain, drain_until_empty  # noqa: E402
from clickhouse_outbox.outbox import liveness  # noqa: E402
from clickhouse_outbox.outbox.enqueue import enqueue  # noqa: E402
from clickhouse_outbox.outbox.registry import Prepared  # noqa: E402
from clickhouse_outbox.producers.course_structure import (  # noqa: E402
    COURSES,
    snapshot_or_request,
    take_course_snapshot,
)
from clickhouse_outbox.serializers.course_structure import serialize_course  # noqa: E402
from clickhouse_outbox.serializers.encoding import dump_time  # noqa: E402
from clickhouse_outbox.sources.base import CourseSource  # noqa: E402
from clickhouse_outbox.sources.olx import folder_name  # noqa: E402
from clickhouse_outbox.testing.generator import write_course_export  # noqa: E402
from clickhouse_outbox.testing.sources import ENV as GENERATED_ENV  # noqa: E402
from clickhouse_outbox.testing.sources import generated_course  # noqa: E402
from outbox_project.platform.models import CourseEnrollment, ExternalId, UserProfile  # noqa: E402

TABLES = (COURSE_OVERVIEWS, COURSE_BLOCKS, COURSE_RELATIONSHIPS)
#: The stand-ins of the platform's tables bulk_enroll fills (children first).
PLATFORM_TABLES = [model._meta.db_table for model in (CourseEnrollment, ExternalId, UserProfile, get_user_model())]


def peak_rss_mb():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def summary(samples_ms, **extra):
    return {
        "samples_ms": [round(sample, 3) for sample in samples_ms],
        "median_ms": round(statistics.median(samples_ms), 3),
        "min_ms": round(min(samples_ms), 3),
        "max_ms": round(max(samples_ms), 3),
        "peak_rss_mb": peak_rss_mb(),
        "database": connection.vendor,
        **extra,
    }


def empty_tables(tables):
    learners.empty_tables(connection, tables)


def reset(args):
    call_command("migrate", verbosity=0)
    empty_outbox()
    backend = get_backend()
    backend.command(f"DROP DATABASE IF EXISTS {quote_identifier(backend.database)}")
    create_schema(backend)
    return {"reset": True}


class OneCourse(CourseSource):
    def __init__(self, course):
        self.course = course

    def get_course(self, course_key):
        return self.course


def publish(args):
    course = generated_course(0, args.blocks)
    source = OneCourse(course)
    if args.backlog:
        queue_backlog(args.backlog, 1000, first=1)
    if args.snapshot_at == "drain":
        settings.CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain"

        def take(course_key, reason, source):
            return snapshot_or_request(course_key, reason)  # the publish's part: the request only
    else:
        take = take_course_snapshot
    samples = []
    for attempt in range(args.warmup + args.repeat):
        started = time.perf_counter()
        with transaction.atomic():
            take(course.course_key, "published", source=source)
        elapsed = (time.perf_counter() - started) * 1000
        if attempt >= args.warmup:
            samples.append(elapsed)
    pending = OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING).count()
    return summary(samples, blocks=args.blocks, backlog_rows=args.backlog, pending_entries=pending,
                   snapshot_at=args.snapshot_at)


def queue_backlog(rows, blocks, first=0):
    """About `rows` rows pending, as snapshots of distinct courses of `blocks` blocks (one serialization)."""
    course = generated_course(0, blocks)
    rows_by_table = serialize_course(course, dump_id=uuid.uuid4(), time_last_dumped=dump_time(timezone.now()),
                                     snapshot_time=timezone.now())
    per_course = sum(len(lines) for lines in rows_by_table.values())
    count = max(1, round(rows / per_course))
    for index in range(first, first + count):
        snapshot = Prepared(f"course-v1:Backlog+B{index}+R1", uuid.uuid4(), dump_time(timezone.now()),
                            rows=rows_by_table)
        with transaction.atomic():
            enqueue(COURSES, [snapshot], reason="bench")
    return count * per_course


def backlog_command(args):
    started = time.perf_counter()
    queued = queue_backlog(args.rows, args.blocks)
    return {"rows_queued": queued, "seconds": round(time.perf_counter() - started, 2)}


def clickhouse_rows():
    backend = get_backend()
    return {
        table.name: int(backend.query(f"SELECT count() AS n FROM {qualified_name(backend.database, table.name)}")[0]["n"])
        for table in TABLES
    }


def drain_command(args):
    rows = sum(OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING).values_list("row_count", flat=True))
    before = sum(clickhouse_rows().values())
    started = time.perf_counter()
    if args.drainers == 1:
        result, left = drain_until_empty(timeout=3600, poll_interval=0.05, threads=args.threads)
        assert not result.errors, result.errors[-3:]
    else:
        processes = [spawn("drainer") for _ in range(args.drainers)]
        for process in processes:
            assert process.wait() == 0
        left = backlog()
    elapsed = time.perf_counter() - started
    delivered = sum(clickhouse_rows().values()) - before
    assert not left["pending_entries"] and not left["open_batches"], left
    return {
        "rows": rows, "rows_delivered": delivered, "seconds": round(elapsed, 3),
        "rows_per_second": round(rows / elapsed), "peak_rss_mb": peak_rss_mb(), "database": connection.vendor,
        "drainers": args.drainers, "threads": args.threads, "batches": Batch.objects.count(),
    }


def spawn(role, *extra, env=None):
    return subprocess.Popen(  # noqa: S603 (this script)
        [sys.executable, __file__, role, *extra], env=env or os.environ.copy(), stdout=subprocess.PIPE, text=True,
    )


def drainer(args):
    """A drain loop in its own process, until the dump job (if any) has ended and nothing is left."""
    while True:
        drain(max_seconds=5, threads=args.threads)
        job_active = DumpJob.objects.filter(active=True).exists()
        left = backlog()
        if not job_active and not left["pending_entries"] and not left["open_batches"]:
            return {"role": "drainer", "peak_rss_mb": peak_rss_mb()}
        if not left["pending_entries"] and not left["open_batches"]:
            time.sleep(0.01)


def dump_worker(args):
    job = DumpJob.objects.get(pk=args.job)
    while True:
        job = run_job(job)
        if not job.active:
            return {"role": "dump_worker", "peak_rss_mb": peak_rss_mb()}
        time.sleep(0.01)


def wait_ready(process):
    """Each helper process prints one line once ready (its courses in memory)."""
    line = process.stdout.readline()
    assert line.strip() == "ready", line


def ready_then_wait(start_file):
    print("ready", flush=True)
    while not os.path.exists(start_file):
        time.sleep(0.002)


def write_exports(args):
    """The OLX exports of the generated courses, in the OLX course source's folder layout (once per bench run)."""
    folder = Path(args.olx_dir)
    stamp = folder / f".complete-{args.courses}x{args.blocks}"
    if stamp.exists():
        return {"olx_dir": str(folder), "written": 0, "files_read": warm(folder)}
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for index in range(args.courses):
        export = write_course_export(folder / ".exports" / str(index), blocks=args.blocks, org="GenX",
                                     course="Gen101", run=f"R{index + 1}", seed=index)
        os.rename(export, folder / folder_name(f"course-v1:GenX+Gen101+R{index + 1}"))
    shutil.rmtree(folder / ".exports")
    stamp.touch()
    os.sync()  # written back now, not while a later scenario is timed
    return {"olx_dir": str(folder), "written": args.courses, "files_read": warm(folder)}


def warm(folder):
    """Read every file once, so each timed dump reads the exports from the page cache, as the last one did."""
    count = 0
    for path in Path(folder).rglob("*"):
        if path.is_file():
            path.read_bytes()
            count += 1
    return count


def full_dump(args):
    env = os.environ.copy()
    with tempfile.TemporaryDirectory(prefix="bench-start-") as folder:
        if args.source == "olx":
            # This VM reclaims page cache it sees idle (DAMON): read the exports just before, so every
            # run reads them from memory, not only the ones that follow another OLX run.
            warm(args.olx_dir)
            env["CLICKHOUSE_OUTBOX_COURSE_SOURCE"] = "clickhouse_outbox.sources.olx.OlxFolderSource"
            env["OLX_COURSES_DIR"] = args.olx_dir
        else:
            env["CLICKHOUSE_OUTBOX_COURSE_SOURCE"] = "clickhouse_outbox.testing.sources.GeneratedSource"
            env[GENERATED_ENV] = f"{args.courses}x{args.blocks}"
        start_file = Path(folder) / "start"
        job = start_job(DumpJob.Scope.ALL, origin="bench")
        workers = [spawn("dump_worker", "--job", str(job.pk), "--start-file", str(start_file), env=env)
                   for _ in range(args.workers)]
        drainer_process = spawn("drainer", "--start-file", str(start_file), "--threads", str(args.threads), env=env)
        for process in (*workers, drainer_process):
            wait_ready(process)
        started = time.perf_counter()
        start_file.touch()
        reports = []
        for process in (*workers, drainer_process):
            out, _ = process.communicate()
            assert process.returncode == 0, out
            reports.append(json.loads(out.splitlines()[-1]))
        elapsed = time.perf_counter() - started
    job.refresh_from_db()
    assert job.status == DumpJob.Status.DONE, job.status
    assert not job.items.exclude(status=DumpJobItem.Status.DONE).exists()
    delivered = clickhouse_rows()
    expected = sum(Snapshot.objects.filter(reason="dump").values_list("row_count", flat=True))
    assert sum(delivered.values()) == expected, (delivered, expected)
    return {
        "courses": args.courses, "blocks": args.blocks, "source": args.source, "workers": args.workers,
        "drain_threads": args.threads,
        "seconds": round(elapsed, 3), "rows_delivered": delivered, "database": connection.vendor,
        "peak_rss_mb": max(report["peak_rss_mb"] for report in reports),
    }


# -- bulk enroll -----------------------------------------------------------------------------


def make_users(count):
    """`count` users with their profiles, as registration leaves them (bulk INSERTs: no signals, untimed)."""
    user_model = get_user_model()
    now = timezone.now()
    user_model.objects.bulk_create(
        [user_model(username=f"bulk{index:06d}", email=f"bulk{index:06d}@example.com", date_joined=now)
         for index in range(count)], batch_size=1000)
    users = list(user_model.objects.filter(username__startswith="bulk").order_by("id"))
    UserProfile.objects.bulk_create([UserProfile(user=user, name=f"Learner {user.username}") for user in users],
                                    batch_size=1000)
    # Each user with its profile in memory, as the request that enrolls them has them.
    return list(user_model.objects.filter(username__startswith="bulk").select_related("profile").order_by("id"))


def count_statements(users, course_key, enroll):
    counter = StatementCounter()
    started = time.perf_counter()
    with connection.execute_wrapper(counter), transaction.atomic():
        for user in users:
            enroll(user, course_key)
    counter.total_seconds = time.perf_counter() - started
    return counter


def enrollment_rows_in_clickhouse():
    backend = get_backend()
    return int(backend.query(f"SELECT count() AS n FROM {qualified_name(backend.database, COURSE_ENROLLMENT.name)}")
               [0]["n"])


def set_enrollments_on(value):
    settings.CLICKHOUSE_OUTBOX_COURSE_ENROLLMENT_ENABLED = value


class FillTimer:
    seconds = 0.0
    rows = 0


@contextlib.contextmanager
def timed_fill():
    """
    The time the drain spends in `take_requested` (claiming, reading, serializing and writing
    the requests' rows), and the rows it took: the deferred fill's rate, apart from the send.
    BENCH_PROFILE_FILL=PATH writes a cProfile of the last call there (slower: not for figures).
    """
    timer, original = FillTimer(), drain_module.take_requested
    lock = threading.Lock()

    profile = os.environ.get("BENCH_PROFILE_FILL")  # a path: the fill's cProfile stats written there (pstats)

    def take_requested(**kwargs):
        started = time.perf_counter()
        if profile:
            import cProfile  # noqa: PLC0415

            profiler = cProfile.Profile()
            taken = profiler.runcall(original, **kwargs)
            profiler.dump_stats(profile)
        else:
            taken = original(**kwargs)
        with lock:
            timer.seconds += time.perf_counter() - started
            timer.rows += taken
        return taken

    drain_module.take_requested = take_requested
    try:
        yield timer
    finally:
        drain_module.take_requested = original


def bulk_enroll(args):
    from tests.learners import enroll  # noqa: PLC0415 (what edx-platform's CourseEnrollment.enroll does)

    settings.CLICKHOUSE_OUTBOX_SNAPSHOT_AT = args.snapshot_at
    empty_tables(PLATFORM_TABLES)
    users = make_users(args.enrollments)
    run = uuid.uuid4().hex[:8]

    # The platform's own part: the same transaction with the producer off (its receiver returns at
    # once), after an untimed tenth as a warm-up (fresh tables, first statements of the process).
    # The second of the two passes meets bigger tables: `--ours-first` swaps them (run.py
    # alternates the order round by round, so neither side always has the smaller tables).
    set_enrollments_on(False)
    enroll_all(users[:max(1, len(users) // 10)], f"course-v1:BenchX+Warm{run}+R1", enroll, transaction.atomic)
    passes = {}
    for side in (("ours", "platform") if args.ours_first else ("platform", "ours")):
        set_enrollments_on(side == "ours")
        course = f"course-v1:BenchX+{'Bulk' if side == 'ours' else 'Base'}{run}+R1"
        passes[side] = enroll_all(users, course, enroll, transaction.atomic)
    set_enrollments_on(True)
    platform, ours = passes["platform"], passes["ours"]
    rss_after_transaction = peak_rss_mb()
    snapshots = Snapshot.objects.filter(producer="course_enrollment").count()

    before = enrollment_rows_in_clickhouse()
    started = time.perf_counter()
    with timed_fill() as fill:
        result, left = drain_until_empty(timeout=3600, poll_interval=0.05, threads=args.threads)
    drain_seconds = time.perf_counter() - started
    assert not result.errors, result.errors[-3:]
    assert not left["pending_entries"] and not left["open_batches"], left
    delivered = enrollment_rows_in_clickhouse() - before
    assert delivered == len(users), (delivered, len(users))
    rss_after_drain = peak_rss_mb()

    # Untimed: statements per enrollment, on a slice of the users (the count per enrollment is flat).
    counted = users[:args.count_enrollments]
    statements = count_statements(counted, f"course-v1:BenchX+Count{run}+R1", enroll)
    set_enrollments_on(False)
    platform_statements = count_statements(counted, f"course-v1:BenchX+CountBase{run}+R1", enroll)
    set_enrollments_on(True)

    n = len(users)
    return {
        "enrollments": n, "snapshot_at": args.snapshot_at, "database": connection.vendor, "ours_first": args.ours_first,
        **figures(n, ours, platform, statements, platform_statements, counted),
        "snapshots_queued": snapshots,
        "drain_seconds": round(drain_seconds, 3),
        "drain_rows": delivered,
        "drain_rows_per_second": round(delivered / drain_seconds),
        "drain_batches": result.batches_sent,
        "drain_snapshots_taken": result.snapshots_taken,
        # The deferred drain's own part: its time taking requests (claim, read, serialize, write), in the drain.
        **({"fill_seconds": round(fill.seconds, 3), "fill_rows": fill.rows,
            "fill_rows_per_second": round(fill.rows / fill.seconds)} if fill.rows else {}),
        "peak_rss_mb": rss_after_drain,
        "rss_after_transaction_mb": rss_after_transaction,
    }


# -- verify ----------------------------------------------------------------------------------


class Counted:
    """Counts the ClickHouse queries (HttpBackend.query: each one HTTP request) and the database statements."""

    def __init__(self):
        self.clickhouse = self.database = 0

    def __enter__(self):
        original = self.original = HttpBackend.query

        def query(backend, sql):
            self.clickhouse += 1
            return original(backend, sql)

        HttpBackend.query = query
        self.wrapper = connection.execute_wrapper(self.statement)
        self.wrapper.__enter__()
        return self

    def statement(self, execute, sql, params, many, context):
        self.database += 1
        return execute(sql, params, many, context)

    def __exit__(self, *exc):
        HttpBackend.query = self.original
        self.wrapper.__exit__(*exc)


def verify_site(args):
    settings.CLICKHOUSE_OUTBOX_COURSE_SOURCE = "clickhouse_outbox.testing.sources.GeneratedSource"
    os.environ[GENERATED_ENV] = f"{args.courses}x{args.blocks}"
    started = time.perf_counter()
    job = start_job(DumpJob.Scope.ALL, origin="bench")
    while job.active:
        job = run_job(job)
    result, left = drain_until_empty(timeout=3600)
    assert result.ok and not left["pending_entries"], (result, left)
    delivered = clickhouse_rows()
    setup_seconds = time.perf_counter() - started
    from clickhouse_outbox.sources import get_course_source  # noqa: PLC0415

    get_course_source().course_keys()  # the generated courses made (once per process) before the timer, as on a site
    out = io.StringIO()
    with Counted() as counted:
        started = time.perf_counter()
        call_command("outbox_verify", "--producer", "course_structure", "--json", stdout=out)  # exit 0 or raises
        seconds = time.perf_counter() - started
    report = json.loads(out.getvalue())
    assert report["counts"]["ok"] == args.courses and not report["differ"], report["counts"]
    return {
        "courses": args.courses, "blocks": args.blocks, "rows_held": delivered, "setup_seconds": round(setup_seconds, 1),
        "seconds": round(seconds, 3), "courses_per_second": round(args.courses / seconds),
        "clickhouse_queries": counted.clickhouse, "database_statements": counted.database,
        "chunk": int(getattr(settings, "CLICKHOUSE_OUTBOX_VERIFY_CHUNK", 1000)),
        "counts": {kind: n for kind, n in report["counts"].items() if n},
        "peak_rss_mb": peak_rss_mb(), "database": connection.vendor,
    }


def kill_recovery(args):
    """The recovery after a SIGKILLed drainer, --repeat times (see the module's docstring)."""
    from tests.proxy import FaultProxy  # noqa: PLC0415 (the tests' proxy: standard library only)

    manage = [sys.executable, str(REPO / "manage.py"), "outbox_drain", "--until-empty", "--timeout", "120"]
    quiet = dict(os.environ, OUTBOX_LOG_LEVEL="WARNING", CLICKHOUSE_TIMEOUT_SECS="240")  # a held send does not time out
    samples, lock_free, lease_left = [], [], []
    for attempt in range(args.repeat):
        empty_outbox()
        course = generated_course(attempt, 20)
        take_course_snapshot(course.course_key, "published", source=OneCourse(course))
        with FaultProxy(settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG["url"], match=b"INSERT") as proxy:
            proxy.hold_response()
            dying = subprocess.Popen([*manage], env=dict(quiet, CLICKHOUSE_URL=proxy.url), cwd=REPO,  # noqa: S603
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            other = None
            try:
                wait_for(lambda: proxy.matched_exchanges() and Batch.objects.filter(status=Batch.Status.CLAIMED).exists())
                held = Batch.objects.get(status=Batch.Status.CLAIMED)
                assert liveness.key_of(held.lease_owner) is not None, "the drainer holds no lock"
                other = subprocess.Popen([*manage], env=quiet, cwd=REPO,  # noqa: S603
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                wait_for(lambda: Batch.objects.filter(status=Batch.Status.SENT).count() == 2)
                killed = time.perf_counter()
                os.kill(dying.pid, signal.SIGKILL)
                wait_for(lambda: liveness.abandoned({held.lease_owner}))  # noqa: B023 (the database dropped its lock)
                lock_free.append((time.perf_counter() - killed) * 1000)
                wait_for(lambda: Batch.objects.filter(pk=held.pk, status=Batch.Status.SENT).exists())  # noqa: B023
                samples.append((time.perf_counter() - killed) * 1000)
                sent = Batch.objects.get(pk=held.pk)
                assert sent.attempts == 2, sent.attempts
                lease_left.append((held.lease_expires_at - sent.sent_at).total_seconds())
                assert other.wait(timeout=120) == 0
            finally:
                proxy.release_held()
                for process in (dying, other):
                    if process is not None and process.poll() is None:
                        process.kill()
                    if process is not None:
                        process.wait()
    return summary(samples, lease_secs=conf.lease_secs(), lease_left_at_resend_secs=round(min(lease_left), 1),
                   lock_free_ms={"median": round(statistics.median(lock_free), 1), "max": round(max(lock_free), 1)})


def wait_for(condition, timeout=60, poll=0.002):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "kill_recovery: a step did not happen within a minute"
        time.sleep(poll)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=["reset", "publish", "backlog", "drain", "full_dump", "write_exports",
                                             "drainer", "dump_worker", "bulk_enroll", "verify", "kill_recovery",
                                             *ours_learners.HANDLERS])
    parser.add_argument("--blocks", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--backlog", type=int, default=0, help="publish: rows pending before timing")
    parser.add_argument("--snapshot-at", choices=["publish", "drain"], default="publish")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--courses", type=int, default=200)
    parser.add_argument("--source", choices=["memory", "olx"], default="memory")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--drainers", type=int, default=1, help="drain: processes")
    parser.add_argument("--threads", type=int, default=1, help="drain, full_dump: threads of the drain")
    parser.add_argument("--olx-dir", help="full_dump --source olx, write_exports: the folder of exports")
    parser.add_argument("--enrollments", type=int, default=10_000, help="bulk_enroll: enrollments in the transaction")
    parser.add_argument("--ours-first", action="store_true",
                        help="bulk_enroll: the pass with the plugin before the platform's own part")
    parser.add_argument("--count-enrollments", type=int, default=1000,
                        help="bulk_enroll: enrollments whose statements are counted (untimed)")
    ours_learners.add_arguments(parser)
    parser.add_argument("--job", type=int)
    parser.add_argument("--start-file")
    args = parser.parse_args()
    if args.start_file:
        if args.scenario == "dump_worker":
            from clickhouse_outbox.sources import get_course_source

            get_course_source().course_keys()  # the courses in memory (or the folder listed) before the start
        ready_then_wait(args.start_file)
    handler = {"reset": reset, "publish": publish, "backlog": backlog_command, "drain": drain_command,
               "full_dump": full_dump, "write_exports": write_exports, "drainer": drainer,
               "dump_worker": dump_worker, "bulk_enroll": bulk_enroll, "verify": verify_site,
               "kill_recovery": kill_recovery, **ours_learners.HANDLERS}[args.scenario]
    print(json.dumps(handler(args)))


if __name__ == "__main__":
    main()
