"""
`make bench`: this project and its peers, side by side, in one run on this machine.

Runs each scenario of bench/ours.py on SQLite, MariaDB and PostgreSQL, and the peer's
where it has one, alternating ours and the peer's round by round, against a ClickHouse
server over HTTP: by default one of the benchmark's own, its data in memory, started for the
run and removed after it (BENCH_CLICKHOUSE; bench/README.rst says why). The peer of the
course scenarios is openedx-event-sink-clickhouse 1.1.1 (bench/peer/); platform-plugin-aspects
2.1.0 (bench/peer/aspects/) is the peer of bulk_enroll (with the real Redis as its celery
broker) and backfill, and the second peer of publish_1k and publish_10k, on the same database
server as ours. Writes bench/results.json and prints a table: median, min-max, peak RSS,
and the ratio to the peer. Issue 19's scenarios: capture (statements per learner change),
backfill (a site of --sizes users made before install: the floor, ours, the peer's
dump_data_to_clickhouse, the operators' surfaces) and verify_learners (outbox_verify over
it); bench/README.rst says what each figure means.

    python bench/run.py [--quick] [--only publish_1k,drain ...] [--databases sqlite,mysql,postgresql] [--merge]
                        [--sizes 10000,50000] [--output PATH]
    python bench/run.py --rst     the README's tables: issue 19's goals, then every scenario

Speed is measured here, never asserted in a test.
"""

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OURS = [str(REPO / ".venv" / "bin" / "python"), str(HERE / "ours.py")]
PEER = [str(REPO / ".bench" / "peer-venv" / "bin" / "python"), str(HERE / "peer" / "run_peer.py")]
ASPECTS = [str(REPO / ".bench" / "aspects-venv" / "bin" / "python"), str(HERE / "peer" / "aspects" / "run_aspects.py")]
#: The aspects peer's celery broker: the real Redis, a db of its own (flushed before and after each run).
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
RESULTS = HERE / "results.json"
#: The ClickHouse databases the benchmark writes (and drops): {prefix}_ours, _peer, _aspects.
CLICKHOUSE_PREFIX = os.environ.get("BENCH_CLICKHOUSE_PREFIX", "bench")

DATABASES = {
    "sqlite": f"sqlite:///{REPO / '.bench' / 'bench.sqlite3'}",
    "mysql": os.environ.get("BENCH_MYSQL_URL", "mysql://root@127.0.0.1:3306/bench_outbox"),
    "postgresql": os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/bench_outbox"),
}
#: The platform's database of the aspects peer (its own stand-in tables), on the same servers.
ASPECTS_DATABASES = {
    "sqlite": f"sqlite:///{REPO / '.bench' / 'aspects.sqlite3'}",
    "mysql": os.environ.get("BENCH_ASPECTS_MYSQL_URL", "mysql://root@127.0.0.1:3306/bench_aspects"),
    "postgresql": os.environ.get("BENCH_ASPECTS_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/bench_aspects"),
}

#: name: (what, our command, the peer's command or None, full sizes, quick sizes)
SCENARIOS = {
    "publish_1k": ("publish, 1,000 blocks (serialize + outbox write + commit)",
                   ["publish", "--blocks", "1000"], ["--scenario", "publish", "--blocks", "1000"],
                   {"repeat": 15, "rounds": 2}, {"repeat": 5, "rounds": 1}),
    "publish_10k": ("publish, 10,000 blocks", ["publish", "--blocks", "10000"],
                    ["--scenario", "publish", "--blocks", "10000"], {"repeat": 5, "rounds": 2},
                    {"repeat": 3, "rounds": 1}),
    "publish_1k_backlog": ("publish, 1,000 blocks, {backlog:,} rows pending",
                           ["publish", "--blocks", "1000"], None, {"repeat": 15, "rounds": 1, "backlog": 1_000_000},
                           {"repeat": 5, "rounds": 1, "backlog": 100_000}),
    "publish_1k_deferred": ("publish, 1,000 blocks, SNAPSHOT_AT=drain",
                            ["publish", "--blocks", "1000", "--snapshot-at", "drain"], None,
                            {"repeat": 30, "rounds": 1}, {"repeat": 10, "rounds": 1}),
    "publish_10k_deferred": ("publish, 10,000 blocks, SNAPSHOT_AT=drain",
                             ["publish", "--blocks", "10000", "--snapshot-at", "drain"], None,
                             {"repeat": 30, "rounds": 1}, {"repeat": 10, "rounds": 1}),
    "drain": ("drain over HTTP, {rows:,} rows, {threads} thread(s)", ["drain"], None,
              {"rows": 1_000_000, "rounds": 2, "threads": [1, 2]}, {"rows": 100_000, "rounds": 1, "threads": [1, 2]}),
    "full_dump_memory": ("full dump, {courses} x {blocks} blocks, in memory, {workers} worker(s)",
                         ["full_dump", "--source", "memory"], ["--scenario", "full_dump"],
                         {"courses": 200, "blocks": 400, "rounds": 2, "workers": [1, 2]},
                         {"courses": 40, "blocks": 400, "rounds": 1, "workers": [1]}),
    "full_dump_olx": ("full dump, {courses} x {blocks} blocks, from OLX, {workers} worker(s)",
                      ["full_dump", "--source", "olx"], None,
                      {"courses": 200, "blocks": 400, "rounds": 3, "workers": [1, 2]},
                      {"courses": 20, "blocks": 400, "rounds": 1, "workers": [1, 2]}),
    # ONE transaction of N enrollments (the row + COURSE_ENROLLMENT_CHANGED/_CREATED each), then
    # the drain of their rows; the peer: the same transaction with its receiver (on_commit: a
    # get + a celery publish to Redis each), then its worker task body per enrollment.
    "bulk_enroll": ("bulk enroll, {enrollments:,} enrollments in one transaction",
                    ["bulk_enroll"], ["--bool-as-string"],
                    # rounds: the platform's part and ours in alternating order (run by run, the
                    # machine's noise was ±0.2x on one round's ratio; the median of three holds).
                    {"enrollments": 10_000, "rounds": 3, "tasks": 500, "count": 1000},
                    {"enrollments": 2_000, "rounds": 1, "tasks": 200, "count": 200}),
    "bulk_enroll_deferred": ("bulk enroll, {enrollments:,} enrollments in one transaction, SNAPSHOT_AT=drain",
                             ["bulk_enroll", "--snapshot-at", "drain"], None,
                             # fill_threads: the drain's fill measured again with that many loops each
                             # (CLICKHOUSE_OUTBOX_FILL_THREADS; its default, 2, in the main runs; SQLite
                             # has one writer, one loop: not there).
                             {"enrollments": 10_000, "rounds": 3, "count": 1000, "fill_threads": [1]},
                             {"enrollments": 2_000, "rounds": 1, "count": 200, "fill_threads": [1]}),
    # A healthy site delivered (untimed), then outbox_verify over every course: its time, its
    # ClickHouse queries (a few per chunk of CLICKHOUSE_OUTBOX_VERIFY_CHUNK courses) and statements.
    "verify": ("verify a healthy site, {courses:,} courses x {blocks} blocks (outbox_verify)", ["verify"], None,
               {"courses": 5_000, "blocks": 20, "rounds": 1}, {"courses": 1_000, "blocks": 20, "rounds": 1}),
    # A drainer SIGKILLed while its send is held (its lease: the default 300 s); another
    # `outbox_drain --until-empty` (which looks again every second) sends its batch: from the kill to sent.
    "kill_recovery": ("recovery after a SIGKILLed drainer: kill to its batch sent by another (lease 300 s)",
                      ["kill_recovery"], None, {"repeat": 10, "rounds": 1}, {"repeat": 5, "rounds": 1}),
    # Issue 19, goal 1: per kind of learner change, each in a transaction of its own, the
    # statements with the producers on and off (ours.py capture), SNAPSHOT_AT=publish and =drain.
    "capture": ("learner changes, one transaction each, SNAPSHOT_AT={snapshot_at}: statements the plugin adds",
                ["capture"], None, {"changes": 200, "modes": ["publish", "drain"]},
                {"changes": 100, "modes": ["publish", "drain"]}),
    # Issue 19, goals 2 and 3 (measure_learners): a site of N users made before install, at each
    # of --sizes; the floor, ours as an operator runs it, the peer's dump_data_to_clickhouse, the
    # operators' surfaces; verify_learners: outbox_verify over the backfilled learners.
    "backfill": ("backfill, {users:,} users (profile + external id) and {enrollments:,} enrollments made "
                 "before install, until ClickHouse holds every row", None, ["--scenario", "backfill"],
                 {"sizes": [100_000, 1_000_000], "dump_data_max_users": 100_000, "surface_timeout": 900},
                 {"sizes": [10_000, 50_000], "dump_data_max_users": 0, "surface_timeout": 120}),
    "verify_learners": ("outbox_verify --producer {producer} over the backfilled site, {subjects:,} subjects",
                        None, None, {"sizes": [100_000, 1_000_000], "verify_max_users": 100_000},
                        {"sizes": [10_000, 50_000], "verify_max_users": 10_000}),
}
#: The learner scenarios, run together (one site per size and database serves both).
LEARNER_SCENARIOS = ("backfill", "verify_learners")
#: The producers verify_learners verifies.
VERIFIED_PRODUCERS = ("user_profile", "course_enrollment")
#: The second peer of the publish scenarios: platform-plugin-aspects 2.1.0's course task (run_aspects.py).
ASPECTS_PUBLISH = {"publish_1k": ["--scenario", "publish", "--blocks", "1000", "--bool-as-string"],
                   "publish_10k": ["--scenario", "publish", "--blocks", "10000", "--bool-as-string"]}


def run_json(command, env, timeout=None):
    out = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO, timeout=timeout)  # noqa: S603
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def ensure_databases(databases):
    """
    The MariaDB/MySQL and PostgreSQL benchmark databases, ours and the aspects peer's, created
    if missing (their tables by `ours.py reset` and by run_aspects.py).
    """
    import dj_database_url

    (REPO / ".bench").mkdir(exist_ok=True)
    for database in databases:
        for url in (DATABASES[database], ASPECTS_DATABASES[database]):
            config = dj_database_url.parse(url)
            if database == "mysql":
                import MySQLdb

                connection = MySQLdb.connect(host=config["HOST"], port=int(config["PORT"] or 3306),
                                             user=config["USER"], password=config["PASSWORD"] or "")
                connection.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{config['NAME']}` CHARACTER SET utf8mb4")
                connection.close()
            elif database == "postgresql":
                import psycopg

                with psycopg.connect(host=config["HOST"], port=config["PORT"] or 5432, user=config["USER"],
                                     password=config["PASSWORD"] or None, dbname="postgres", autocommit=True) as pg:
                    if not pg.execute("SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]]).fetchone():
                        pg.execute(f'CREATE DATABASE "{config["NAME"]}"')


#: The benchmark's ClickHouse server (BENCH_CLICKHOUSE): "memory" (the default), one of its own started by the test
#: server's script on its own ports with its data in /dev/shm, so no run pays what this machine's disk charges for
#: creating files after many were deleted (bench/README.rst); "test", the running test server as it is (data on disk).
BENCH_CLICKHOUSE = os.environ.get("BENCH_CLICKHOUSE", "memory")
BENCH_SERVER = {"CH_TEST_DIR": os.environ.get("BENCH_CLICKHOUSE_DIR", "/dev/shm/clickhouse-outbox-bench"),
                "CH_TEST_HTTP_PORT": os.environ.get("BENCH_CLICKHOUSE_HTTP_PORT", "17123"),
                "CH_TEST_TCP_PORT": os.environ.get("BENCH_CLICKHOUSE_TCP_PORT", "17000")}


@contextlib.contextmanager
def clickhouse_server():
    """
    The server's CLICKHOUSE_TEST_* variables. A "memory" server not running yet is started for
    the run, then stopped and its directory removed (its data takes memory in /dev/shm).
    """
    script = str(REPO / "scripts" / "clickhouse-test-server")
    if BENCH_CLICKHOUSE not in ("memory", "test"):
        raise SystemExit(f"BENCH_CLICKHOUSE={BENCH_CLICKHOUSE!r}: memory (the default) or test")
    env = dict(os.environ, **BENCH_SERVER) if BENCH_CLICKHOUSE == "memory" else dict(os.environ)
    started_here = BENCH_CLICKHOUSE == "memory" and subprocess.run([script, "status"], env=env,
                                                                    capture_output=True).returncode != 0
    try:
        if started_here:
            subprocess.run([script, "start"], env=env, check=True, stdout=sys.stderr)
        out = subprocess.run([script, "env"], capture_output=True, text=True, check=True, env=env)
        yield dict(line.split("=", 1) for line in out.stdout.split() if "=" in line)
    finally:
        if started_here:
            subprocess.run([script, "stop"], env=env, stdout=sys.stderr)
            shutil.rmtree(BENCH_SERVER["CH_TEST_DIR"], ignore_errors=True)


def compile_sources():
    """
    Each side's own sources as bytecode before the run, with each side's interpreter: ours (the
    app, the project, bench/), the peers' stand-ins and runners. An operator's install has its
    bytecode (pip compiles what it installs; the peers' plugins come so from PyPI); a shell with
    PYTHONDONTWRITEBYTECODE set (this machine's) would otherwise compile our whole app in every
    process, ~0.15 s each, and only a few stand-in modules on the peers' side.
    """
    trees = [(OURS[0], [REPO / "clickhouse_outbox", REPO / "outbox_project", HERE]),
             (PEER[0], [HERE / "peer"]), (ASPECTS[0], [HERE / "peer" / "aspects"])]
    for python, paths in trees:
        if Path(python).exists():
            subprocess.run([python, "-m", "compileall", "-q", *map(str, paths)], check=True, stdout=sys.stderr)


def filesystem(path):
    """The type of the file system `path` is on (/proc/mounts: its longest mount point), or None."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return None
    path = os.path.realpath(path)
    found = [(point, kind) for point, kind in mounts if path == point or path.startswith(point.rstrip("/") + "/")]
    return max(found, key=lambda mount: len(mount[0]))[1] if found else None


def server_data(server):
    """Where the run's ClickHouse server kept its data, for the results file."""
    return {"url": server["CLICKHOUSE_TEST_URL"], "data": server["CLICKHOUSE_TEST_DIR"],
            "filesystem": filesystem(server["CLICKHOUSE_TEST_DIR"])}


def timeout_secs():
    return os.environ.get("BENCH_CLICKHOUSE_TIMEOUT_SECS", "60")


def our_env(database_url, server):
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLICKHOUSE_OUTBOX_")}
    env.update(
        DATABASE_URL=database_url, CLICKHOUSE_URL=server["CLICKHOUSE_TEST_URL"],
        CLICKHOUSE_USERNAME=server["CLICKHOUSE_TEST_USERNAME"], CLICKHOUSE_PASSWORD=server["CLICKHOUSE_TEST_PASSWORD"],
        CLICKHOUSE_DATABASE=f"{CLICKHOUSE_PREFIX}_ours", OUTBOX_LOG_LEVEL="WARNING", OUTBOX_DEMO_DIR=str(REPO / ".bench"),
        # The test server is shared: its DDL (DROP DATABASE) can take more than the default 10 s when it is busy
        # (BENCH_CLICKHOUSE_TIMEOUT_SECS: more for a million learners' counts on the old server).
        CLICKHOUSE_TIMEOUT_SECS=timeout_secs(),
        # A lease shorter than one request's deadline is a check error (E011): every command would refuse to start.
        CLICKHOUSE_OUTBOX_LEASE_SECS=str(max(300, 2 * int(timeout_secs()) + 60)),
        DJANGO_SETTINGS_MODULE="outbox_project.settings",
    )
    return env


def peer_run(args, server, extra):
    env = dict(os.environ, PEER_BENCH_PASSWORD=server["CLICKHOUSE_TEST_PASSWORD"])
    command = [*PEER, "--url", server["CLICKHOUSE_TEST_URL"], "--user", server["CLICKHOUSE_TEST_USERNAME"],
               "--password-env", "PEER_BENCH_PASSWORD", "--database", f"{CLICKHOUSE_PREFIX}_peer", "--self-paced-as-string",
               "--drop-database", *args, *extra]
    return run_json(command, env)


def aspects_run(args, server, database):
    """The aspects peer (bench/peer/aspects/run_aspects.py) on `database`'s server, its own database there."""
    env = dict(os.environ, PEER_BENCH_PASSWORD=server["CLICKHOUSE_TEST_PASSWORD"])
    command = [*ASPECTS, "--url", server["CLICKHOUSE_TEST_URL"], "--user", server["CLICKHOUSE_TEST_USERNAME"],
               "--password-env", "PEER_BENCH_PASSWORD", "--database", f"{CLICKHOUSE_PREFIX}_aspects",
               "--database-url", ASPECTS_DATABASES[database], "--redis-url", REDIS_URL, "--drop-database", *args]
    return run_json(command, env)


def describe(template, sizes, **extra):
    return template.format(**{**sizes, **extra})


def stats(values):
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "samples": [round(v, 3) for v in values]}


def measure(name, quick, databases, server, olx_dir):
    """Rows of results for one scenario: for each database (and variant), rounds alternating ours and the peer's."""
    what, ours, peer, full, small = SCENARIOS[name]
    sizes = small if quick else full
    variants = sizes.get("threads") or sizes.get("workers") or [None]
    rows = []
    for variant in variants:
        for database in databases:
            env = our_env(DATABASES[database], server)
            samples, rss, peer_samples, peer_rss, verified = [], [], [], [], []
            aspects_samples, aspects_rss, aspects_runs = [], [], []
            for _ in range(sizes["rounds"]):
                run_json([*OURS, "reset"], env)
                if name == "drain":
                    run_json([*OURS, "backlog", "--rows", str(sizes["rows"])], env)
                    result = run_json([*OURS, "drain", "--threads", str(variant)], env)
                    samples.append(result["rows_per_second"])
                elif name == "verify":
                    result = run_json([*OURS, *ours, "--courses", str(sizes["courses"]), "--blocks",
                                       str(sizes["blocks"])], env)
                    samples.append(result["seconds"] * 1000)
                    verified.append(result)
                elif name.startswith("full_dump"):
                    extra = ["--olx-dir", str(olx_dir)] if "olx" in name else []
                    result = run_json([*OURS, *ours, "--courses", str(sizes["courses"]), "--blocks",
                                       str(sizes["blocks"]), "--workers", str(variant), *extra], env)
                    samples.append(result["seconds"] * 1000)
                else:
                    extra = ["--repeat", str(sizes["repeat"])]
                    if sizes.get("backlog"):
                        extra += ["--backlog", str(sizes["backlog"])]
                    result = run_json([*OURS, *ours, *extra], env)
                    samples += result["samples_ms"]
                    if name == "kill_recovery":
                        verified.append(result)
                rss.append(result["peak_rss_mb"])
                if peer and variant in (None, 1):
                    peer_extra = (["--courses", str(sizes["courses"]), "--blocks", str(sizes["blocks"]), "--repeat", "1"]
                                  if name.startswith("full_dump") else ["--repeat", str(sizes["repeat"])])
                    result = peer_run(peer, server, peer_extra)
                    peer_samples += result["samples_ms"]
                    peer_rss.append(result["peak_rss_mb"])
                if name in ASPECTS_PUBLISH:
                    result = aspects_run([*ASPECTS_PUBLISH[name], "--repeat", str(sizes["repeat"])], server, database)
                    aspects_samples += result["samples_ms"]
                    aspects_rss.append(result["peak_rss_mb"])
                    aspects_runs.append({k: v for k, v in result.items() if k != "samples_ms"})
            unit = "rows/s" if name == "drain" else "ms"
            label = describe(what, sizes, threads=variant, workers=variant)
            rows.append(row(f"{name}" + (f"_{variant}" if variant else ""), label, database, unit, samples, max(rss),
                            peer_samples, max(peer_rss) if peer_rss else None))
            if verified and name == "kill_recovery":
                rows[-1]["kill_runs"] = [{k: v for k, v in r.items() if k in ("lease_secs", "lease_left_at_resend_secs",
                                                                              "lock_free_ms")} for r in verified]
            elif verified:
                rows[-1]["verify_runs"] = [{k: v for k, v in r.items() if k != "peak_rss_mb"} for r in verified]
            if aspects_samples:
                add_second_peer(rows[-1], aspects_samples, max(aspects_rss), aspects_runs)
    return rows


def add_second_peer(result, samples, rss, runs):
    """The publish row's second peer, platform-plugin-aspects 2.1.0's course task: its time and its time over ours."""
    result["aspects"] = stats(samples)
    result["aspects_peak_rss_mb"] = rss
    result["aspects_over_ours"] = round(result["aspects"]["median"] / result["ours"]["median"], 2)
    result["aspects_rows_dropped"] = {table: sum(run["rows_dropped"][table] for run in runs)
                                      for table in runs[0]["rows_dropped"]}


def measure_bulk_enroll(name, quick, databases, server):
    """
    Two rows per database: the one transaction of N enrollments (ms; ours and the aspects
    peer's, each with what the platform alone costs in that transaction), and what follows
    it to ClickHouse (rows/s): our drain of the N rows; the peer's worker task per row.
    """
    what, ours, peer, full, small = SCENARIOS[name]
    sizes = small if quick else full
    label = describe(what, sizes)
    if peer:
        check_redis()
    rows = []
    for database in databases:
        env = our_env(DATABASES[database], server)
        runs, peer_runs = [], []
        for index in range(sizes["rounds"]):
            run_json([*OURS, "reset"], env)
            runs.append(run_json([*OURS, *ours, "--enrollments", str(sizes["enrollments"]),
                                  "--count-enrollments", str(sizes["count"]), *(["--ours-first"] if index % 2 else [])],
                                 env))
            if peer:
                peer_runs.append(aspects_run([*peer, "--enrollments", str(sizes["enrollments"]), "--tasks",
                                              str(sizes["tasks"]), "--count-enrollments", str(sizes["count"])],
                                             server, database))
        peer_rss = max(r["peak_rss_mb"] for r in peer_runs) if peer_runs else None
        transaction_row = row(name, label, database, "ms", [r["ms"] for r in runs], max(r["peak_rss_mb"] for r in runs),
                              [r["ms"] for r in peer_runs], peer_rss)
        transaction_row["per_enrollment"] = per_enrollment(runs, peer_runs)
        transaction_row["ours_runs"] = [{k: v for k, v in r.items() if k != "samples_ms"} for r in runs]
        if peer_runs:
            transaction_row["peer_runs"] = [{k: v for k, v in r.items() if k not in ("samples_ms", "task_samples_ms")}
                                            for r in peer_runs]
        rows.append(transaction_row)
        drain_what = f"{label}: their rows to ClickHouse" + (" (peer: its worker task per row)" if peer else "")
        drain_row = row(f"{name}_drain", drain_what, database, "rows/s", [r["drain_rows_per_second"] for r in runs],
                        max(r["peak_rss_mb"] for r in runs), [r["task_rows_per_second"] for r in peer_runs], peer_rss)
        drain_row["ours_drain_seconds"] = stats([r["drain_seconds"] for r in runs])
        if peer_runs:
            tasks = [sample for r in peer_runs for sample in r["task_samples_ms"]]
            drain_row["peer_task_ms"] = {**{k: v for k, v in stats(tasks).items() if k != "samples"}, "tasks": len(tasks)}
        rows.append(drain_row)
        if all("fill_rows_per_second" in r for r in runs):  # the deferred drain's fill alone (goal 1: ≥ 20,000 rows/s)
            fill_row = row(f"{name}_fill", f"{label}: the drain's fill of the requests (claim, read, serialize, "
                           "write), within the drain", database, "rows/s", [r["fill_rows_per_second"] for r in runs],
                           max(r["peak_rss_mb"] for r in runs), [], None)
            fill_row["ours_fill_seconds"] = stats([r["fill_seconds"] for r in runs])
            rows.append(fill_row)
            for threads in sizes.get("fill_threads", []) if database != "sqlite" else []:
                threaded = []
                looped = {**env, "CLICKHOUSE_OUTBOX_FILL_THREADS": str(threads)}
                for _ in range(sizes["rounds"]):
                    run_json([*OURS, "reset"], env)
                    threaded.append(run_json([*OURS, *ours, "--enrollments", str(sizes["enrollments"]),
                                              "--count-enrollments", "1"], looped))
                fill_row = row(f"{name}_fill_{threads}_threads", f"{label}: the drain's fill of the requests, "
                               f"{threads} loop(s) (CLICKHOUSE_OUTBOX_FILL_THREADS = {threads})", database, "rows/s",
                               [r["fill_rows_per_second"] for r in threaded], max(r["peak_rss_mb"] for r in threaded),
                               [], None)
                fill_row["ours_fill_seconds"] = stats([r["fill_seconds"] for r in threaded])
                rows.append(fill_row)
    return rows


def progress(message):
    print(f"    {message}", file=sys.stderr, flush=True)


def measure_capture(quick, databases, server):
    """
    One row per database and SNAPSHOT_AT: per kind of learner change (an enrollment made as
    the platform makes it, a mode change, a profile saved, an email changed, an external id
    created), each in a transaction of its own, the statements with the plugin and the
    platform's own (producers off); `ours` is the most the plugin adds to any kind (goal: 2).
    """
    what, ours, _, full, small = SCENARIOS["capture"]
    sizes = small if quick else full
    rows = []
    for database in databases:
        env = our_env(DATABASES[database], server)
        for mode in sizes["modes"]:
            run_json([*OURS, "reset"], env)
            result = run_json([*OURS, *ours, "--changes", str(sizes["changes"]), "--snapshot-at", mode], env)
            rows.append({
                "scenario": f"capture_{mode}", "group": "capture", "what": describe(what, sizes, snapshot_at=mode),
                "database": database, "unit": "statements", "ours": stats([result["most_added"]]),
                "ours_peak_rss_mb": result["peak_rss_mb"], "changes": result["changes"], "kinds": result["kinds"],
            })
    return rows


def measure_learners(names, quick, databases, server, options):
    """
    The learner scenarios at each size of --sizes, on each database: the site made once
    (bench/learners.py, before install, untimed) and used by every part, then dropped:
      backfill         the floor (ours.py learners_floor), ours as an operator runs it
                       (learners_backfill: outbox_requeue --all + outbox_drain --until-empty;
                       and via dump_data_to_clickhouse and the admin's dump form with a celery
                       worker and beat, up to --dump-data-max-users), the peer's
                       dump_data_to_clickhouse (run_aspects.py --scenario backfill, on its own
                       database of the same server holding the same learners), and the
                       operators' surfaces after our backfill (learners_surfaces, a page per
                       process, cut at --surface-timeout)
      verify_learners  outbox_verify --producer user_profile, then course_enrollment, over the
                       backfilled site (up to --verify-max-users: it is slow today)
    """
    quick_or_full = 4 if quick else 3
    backfill, verify = "backfill" in names, "verify_learners" in names
    config = {**SCENARIOS["verify_learners"][quick_or_full], **SCENARIOS["backfill"][quick_or_full]}
    sizes = options.sizes or config["sizes"]
    verify_max = options.verify_max_users if options.verify_max_users is not None else config["verify_max_users"]
    dump_data_max = (options.dump_data_max_users if options.dump_data_max_users is not None
                     else config["dump_data_max_users"])
    surface_timeout = options.surface_timeout or config["surface_timeout"]
    peer_max = options.peer_max_users if options.peer_max_users is not None else max(sizes)
    rows = []
    for database in databases:
        env = our_env(DATABASES[database], server)
        for users in sizes:
            n = ["--users", str(users)]
            label = describe(SCENARIOS["backfill"][0], {"users": users, "enrollments": 3 * users})
            progress(f"{database}, {users:,} users: generating")
            run_json([*OURS, "reset"], env)
            generated = run_json([*OURS, "learners_generate", *n], env)
            try:
                floor = None
                if backfill:
                    progress(f"{database}, {users:,} users: the floor")
                    floor = run_json([*OURS, "learners_floor", *n], env)
                progress(f"{database}, {users:,} users: ours (outbox_requeue --all --drain)")
                ours = run_json([*OURS, "learners_backfill", *n, "--via", "requeue"], env)
                if backfill:
                    rows.append(backfill_row(f"backfill_{users}", label, database, users, ours, floor, generated))
                if backfill and users <= dump_data_max:
                    progress(f"{database}, {users:,} users: ours (outbox_requeue --all, then outbox_drain --until-empty)")
                    after = run_json([*OURS, "learners_backfill", *n, "--via", "requeue", "--send", "after"], env)
                    rows.append(backfill_row(f"backfill_sent_after_{users}", f"{label}, the rows sent after the "
                                             "dump (outbox_drain --until-empty)", database, users, after, floor, generated))
                if backfill:
                    rows.append(surfaces_row(users, database, env, surface_timeout))
                if verify:
                    for producer in VERIFIED_PRODUCERS:
                        if users > verify_max:
                            progress(f"{database}, {users:,} users: outbox_verify skipped (--verify-max-users {verify_max:,})")
                            continue
                        progress(f"{database}, {users:,} users: outbox_verify --producer {producer}")
                        result = run_json([*OURS, "learners_verify", *n, "--producer", producer], env)
                        rows.append(verify_row(users, database, producer, result))
                    if users <= verify_max:
                        progress(f"{database}, {users:,} users: the sweep (first, quiet, after 1,000 update()s)")
                        rows.append(sweep_row(users, database, run_json([*OURS, "learners_sweep", *n], env)))
                if backfill and users <= dump_data_max:
                    progress(f"{database}, {users:,} users: ours (dump_data_to_clickhouse --object ×3 --drain)")
                    via = run_json([*OURS, "learners_backfill", *n, "--via", "dump_data"], env)
                    rows.append(backfill_row(f"backfill_dump_data_{users}", f"{label}, via dump_data_to_clickhouse "
                                             "--object … --drain (the three models in one command)", database, users,
                                             via, floor, generated))
                    progress(f"{database}, {users:,} users: ours (dump_data_to_clickhouse --drain per model)")
                    each = run_json([*OURS, "learners_backfill", *n, "--via", "dump_data_each"], env)
                    rows.append(backfill_row(f"backfill_dump_data_each_{users}", f"{label}, via "
                                             "dump_data_to_clickhouse --object X --drain (a command per model, as "
                                             "the peer's)", database, users, each, floor, generated))
                    progress(f"{database}, {users:,} users: ours (the admin's dump form, celery worker and beat)")
                    admin = run_json([*OURS, "learners_backfill", *n, "--via", "admin"], env)
                    interval = admin["steps"][0].get("drain_interval_secs")
                    rows.append(backfill_row(f"backfill_admin_{users}", f"{label}, from the admin's dump form with a "
                                             f"celery worker (-c 2) and beat (the drain every {interval:g} s)",
                                             database, users, admin, floor, generated))
            finally:
                # Ours' learners, outbox and ClickHouse database gone before the peer runs: no merge
                # of our parts left running on the server while it is timed.
                try:
                    run_json([*OURS, "learners_drop"], env)
                except SystemExit as exc:  # a busy shared server timing out its DROP loses no figure
                    progress(f"{database}, {users:,} users: learners_drop failed: {str(exc).splitlines()[-1]}")
            if backfill and users > peer_max:
                progress(f"{database}, {users:,} users: the peer not run (--peer-max-users {peer_max:,})")
            elif backfill:
                progress(f"{database}, {users:,} users: the peer's dump_data_to_clickhouse")
                # Its 5 s HTTP timeout raised to 60 s (a 10,000-row INSERT on a busy machine is not cut
                # off), or to BENCH_CLICKHOUSE_TIMEOUT_SECS: its counts and DROP of a million learners' rows.
                # Every way of ours at this size (one command, sent after, per model) beside the same peer run.
                ours_rows = [r for r in rows if r["database"] == database and r["scenario"] in (
                    f"backfill_{users}", f"backfill_sent_after_{users}", f"backfill_dump_data_{users}",
                    f"backfill_dump_data_each_{users}", f"backfill_admin_{users}")]
                try:
                    peer = aspects_run([*SCENARIOS["backfill"][2], *n, "--bool-as-string", "--timeout-secs",
                                        str(max(60, int(timeout_secs()))), "--drop-learners"], server, database)
                except SystemExit as exc:  # the peer's failure is reported; ours, the floor and the surfaces are kept
                    lines = str(exc).strip().splitlines()
                    steps = [line for line in lines if line.startswith("dump_data_to_clickhouse --object")]
                    progress(f"{database}, {users:,} users: the peer failed: {lines[-1]}; its steps: {steps}")
                    for ours_row in ours_rows:
                        ours_row["peer_error"] = lines[-1]
                        ours_row["peer_steps_logged"] = steps
                else:
                    for ours_row in ours_rows:
                        add_backfill_peer(ours_row, peer)
    return rows


def backfill_detail(result):
    keys = ("seconds", "rows", "rows_per_second", "us_per_row", "peak_rss_mb", "complete", "held")
    return {key: result[key] for key in keys if key in result}


def backfill_row(name, what, database, users, ours, floor, generated):
    """Ours until ClickHouse holds every row (s), beside the floor; the peer is added by add_backfill_peer."""
    result = {
        "scenario": name, "group": "backfill", "what": what, "database": database, "unit": "s", "users": users,
        "ours": stats([ours["seconds"]]), "ours_peak_rss_mb": ours["peak_rss_mb"],
        "ours_detail": {**backfill_detail(ours), "via": ours["via"], "send": ours.get("send", "after"),
                        "queue_seconds": ours["queue_seconds"],
                        "drain_seconds": ours["drain_seconds"], "peak_rss_mb_by_step": ours["peak_rss_mb_by_step"],
                        "failed_steps": ours["failed_steps"], "snapshots": ours["snapshots"],
                        "startup_seconds_each": ours.get("startup_seconds_each")},
        "generated": generated,
    }
    if floor is not None:
        result["floor"] = {**backfill_detail(floor), "encoder": floor["encoder"], "chunk": floor["chunk"],
                           "inserts": floor["inserts"]}
        result["ours_over_floor"] = round(ours["seconds"] / floor["seconds"], 2)
    return result


def add_backfill_peer(result, peer):
    result["peer"] = stats([peer["seconds"]])
    result["peer_peak_rss_mb"] = peer["peak_rss_mb"]
    result["peer_over_ours"] = round(peer["seconds"] / result["ours"]["median"], 2)
    result["peer_detail"] = {**backfill_detail(peer), "steps": peer["steps"], "batch_size": peer["batch_size"],
                             "sleep_time": peer["sleep_time"], "default_sleep_seconds": peer["default_sleep_seconds"],
                             "error": peer.get("error")}


def surfaces_row(users, database, env, timeout):
    """
    Each surface in a process of its own (learners_surfaces --page), cut after `timeout` seconds,
    once ClickHouse has merged the backfill's parts (learners_settle: on this machine it shares
    the two cores with the pages).
    """
    progress(f"{database}, {users:,} users: waiting for ClickHouse's merges")
    settled = run_json([*OURS, "learners_settle", "--timeout", str(timeout)], env)
    pages = {}
    for page in ("learners_and_tags", "filtered_by_producer", "filtered_by_state", "searched", "one_subject",
                 "outbox_status"):
        progress(f"{database}, {users:,} users: {page}")
        try:
            result = run_json([*OURS, "learners_surfaces", "--users", str(users), "--page", page, "--repeat", "3"],
                              env, timeout=timeout)
            pages[page] = {key: result[key] for key in ("median_ms", "first_ms", "samples_ms", "url", "command_seconds")
                           if key in result}
        except subprocess.TimeoutExpired:
            pages[page] = {"timeout_s": timeout}
        except SystemExit as exc:  # a page that failed is reported; the run's other figures are kept
            progress(f"{database}, {users:,} users: {page} failed: {str(exc).strip().splitlines()[-1]}")
            pages[page] = {"error": str(exc).strip().splitlines()[-1]}
    slowest = max(pages, key=lambda page: pages[page].get("median_ms", float("inf")))
    value = pages[slowest].get("median_ms", timeout * 1000)
    return {"scenario": f"surfaces_{users}", "group": "backfill", "database": database, "unit": "ms", "users": users,
            "what": f"operators' surfaces after the backfill of {users:,} users: the slowest of \"Learners and tags\" "
                    "(as it opens, by producer, by state, searched), one subject's page and outbox_status",
            "ours": stats([value]), "ours_peak_rss_mb": None, "slowest": slowest, "surfaces": pages,
            "settled": settled}


def verify_row(users, database, producer, result):
    subjects = result["checked"]
    rate = result["subjects_per_second"]
    return {"scenario": f"verify_learners_{producer}_{users}", "group": "verify_learners", "database": database,
            "unit": "s", "users": users,
            "what": describe(SCENARIOS["verify_learners"][0], {"producer": producer, "subjects": subjects}),
            "ours": stats([result["seconds"]]), "ours_peak_rss_mb": result["peak_rss_mb"],
            "subjects_per_second": rate, "exit_status": result["exit_status"], "counts": result["counts"],
            "minutes_per_million": round(1e6 / rate / 60, 1) if rate else None}


def sweep_row(users, database, result):
    """The sweep of the three learner tables: a quiet run (what every beat run costs) as the figure, the others beside."""
    quiet = result["quiet"]
    return {"scenario": f"sweep_learners_{users}", "group": "verify_learners", "database": database, "unit": "s",
            "users": users, "what": f"the sweep of the learner tables after the backfill of {users:,} users "
                                    f"({quiet['rows']:,} rows, ranges of {result['chunk']:,} keys), nothing changed",
            "ours": stats([quiet["seconds"]]), "ours_peak_rss_mb": result["peak_rss_mb"],
            "rows_per_second": quiet["rows_per_second"], "first_after_backfill": result["first"],
            "after_update": result["after_update"], "changed_by_update": result["changed_by_update"],
            "found_all": result["found_all"]}


def check_redis():
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        raise SystemExit(f"bulk_enroll: the aspects peer's broker, Redis at {REDIS_URL}, does not answer ({exc}); "
                         "start redis-server (or set BENCH_REDIS_URL)")


def per_enrollment(runs, peer_runs):
    """The medians over rounds of the per-enrollment figures; `own` = with the plugin minus the platform alone."""
    def median(results, key):
        return round(statistics.median(r[key] for r in results), 4)

    figures = {}
    for side, results in (("ours", runs), ("peer", peer_runs)):
        if not results:
            continue
        for key in ("ms_per_enrollment", "own_ms_per_enrollment", "platform_ms_per_enrollment",
                    "first_tenth_ms_per_enrollment", "last_tenth_ms_per_enrollment", "statements_per_enrollment",
                    "own_statements_per_enrollment", "platform_statements_per_enrollment"):
            figures[f"{side}_{key.removesuffix('_per_enrollment')}"] = median(results, key)
    # Issue 19's goal 1: the transaction with the sink over the platform's own part (at most 1.5x),
    # the median of each round's own ratio (its two passes back to back: the same load on both).
    figures["ours_over_platform"] = round(statistics.median(r["ms"] / r["platform_ms"] for r in runs), 2)
    if peer_runs:
        figures["peer_over_platform"] = round(statistics.median(r["ms"] / r["platform_ms"] for r in peer_runs), 2)
        figures["peer_commit_ms"] = median(peer_runs, "commit_ms_per_enrollment")
        figures["peer_task_ms"] = median(peer_runs, "task_median_ms")
        figures["peer_task_statements"] = median(peer_runs, "task_statements")
    return figures


def over_platform(figures, side):
    """A bulk enroll's transaction over the platform's own part (`per_enrollment`'s, or from the medians of older results)."""
    return figures.get(f"{side}_over_platform") or figures[f"{side}_ms"] / figures[f"{side}_platform_ms"]


def row(name, what, database, unit, samples, rss, peer_samples, peer_rss):
    result = {"scenario": name, "what": what, "database": database, "unit": unit, "ours": stats(samples),
              "ours_peak_rss_mb": rss}
    if peer_samples:
        result["peer"] = stats(peer_samples)
        result["peer_peak_rss_mb"] = peer_rss
        # The peer's cost over ours: its time over ours, or for a rate ours over its.
        ours, peer = result["ours"]["median"], result["peer"]["median"]
        result["peer_over_ours"] = round(ours / peer if unit == "rows/s" else peer / ours, 2)
    return result


def table(rows):
    lines = [f"{'scenario':<64} {'db':<10} {'ours median (min-max)':>28} {'RSS MB':>7} {'peer median':>12} {'x peer':>7}"]
    for r in rows:
        ours = r["ours"]
        unit = r["unit"]
        cell = f"{ours['median']:,.1f} {unit} ({ours['min']:,.1f}-{ours['max']:,.1f})"
        peer = f"{r['peer']['median']:,.1f}" if "peer" in r else "-"
        ratio = f"{r['peer_over_ours']:.1f}x" if "peer" in r else "-"  # how many times faster than the peer
        rss = r["ours_peak_rss_mb"] if r.get("ours_peak_rss_mb") is not None else "-"
        lines.append(f"{r['what'][:64]:<64} {r['database']:<10} {cell:>28} {rss:>7} {peer:>12} {ratio:>7}")
        lines.extend(f"    {line}" for line in detail_lines(r))
        if "per_enrollment" in r:
            lines.append(f"    per enrollment: {per_enrollment_text(r['per_enrollment'])}")
        for run in r.get("verify_runs", []):
            lines.append(f"    {run['courses_per_second']:,} courses/s, {run['clickhouse_queries']} ClickHouse queries, "
                         f"{run['database_statements']:,} database statements (chunks of {run['chunk']:,}); "
                         f"{sum(run['rows_held'].values()):,} rows held, delivered in {run['setup_seconds']} s untimed")
        for run in r.get("kill_runs", []):
            lines.append(f"    the dead drainer's lock free after {run['lock_free_ms']['median']:,.1f} ms "
                         f"(max {run['lock_free_ms']['max']:,.1f}); resent with {run['lease_left_at_resend_secs']} s "
                         f"of its {run['lease_secs']} s lease left")
        if "peer_task_ms" in r:
            lines.append(f"    peer's task: {r['peer_task_ms']['median']:,.2f} ms median "
                         f"({r['peer_task_ms']['min']:,.2f}-{r['peer_task_ms']['max']:,.2f}), one HTTP POST each")
    return "\n".join(lines)


def sending(ours):
    """How a backfill row's rows were sent: beside the dump (--drain), or after it (queue and drain times)."""
    if ours.get("queue_seconds") is None:
        return "sent as queued: --drain"
    return f"queue {ours['queue_seconds']} s, drain {ours['drain_seconds']} s"


def detail_lines(r):
    """The issue-19 figures of a row, in words (the console's table)."""
    lines = []
    if "aspects" in r:
        lines.append(f"second peer, platform-plugin-aspects 2.1.0's course task: {r['aspects']['median']:,.1f} ms "
                     f"({r['aspects_over_ours']:.1f}x ours); rows it did not write: {r['aspects_rows_dropped']}")
    if "floor" in r:
        floor, ours = r["floor"], r["ours_detail"]
        lines.append(f"ours {ours['rows_per_second']:,} rows/s, {ours['us_per_row']} us a row, {ours['peak_rss_mb']} MB "
                     f"({sending(ours)}; a process starts in "
                     f"{ours.get('startup_seconds_each')} s); floor {floor['seconds']} s, "
                     f"{floor['rows_per_second']:,} rows/s, {floor['peak_rss_mb']} MB: ours is {r['ours_over_floor']}x "
                     "the floor")
        for side, detail in (("ours", ours), ("floor", floor), ("peer", r.get("peer_detail"))):
            if detail and not detail.get("complete", True):
                lines.append(f"{side}: NOT every row in ClickHouse: {detail['held']}")
    if "peer_detail" in r:
        peer = r["peer_detail"]
        lines.append(f"peer {peer['rows_per_second']:,} rows/s, {peer['peak_rss_mb']} MB (--sleep_time "
                     f"{peer['sleep_time']}; its default would add {peer['default_sleep_seconds']} s): "
                     f"{r['peer_over_ours']}x ours" + (f"; error: {peer['error']}" if peer.get("error") else ""))
    if "surfaces" in r:
        lines.append(", ".join(f"{page} " + (f"{value['median_ms']:,.0f} ms" if "median_ms" in value else
                                             f"> {value['timeout_s']} s" if "timeout_s" in value else
                                             f"failed ({value['error']})") for page, value in r["surfaces"].items()))
    if "subjects_per_second" in r:
        lines.append(f"{r['subjects_per_second']:,} subjects/s (about {r['minutes_per_million']} min a million), "
                     f"exit status {r['exit_status']}, {r['counts']}")
    if "kinds" in r:
        lines.append("; ".join(f"{kind}: +{k['plugin_adds']:g} ({k['with_plugin']:g} with it, {k['platform']:g} "
                               "the platform's)" for kind, k in r["kinds"].items()))
    if "per_enrollment" in r:
        figures = r["per_enrollment"]
        text = f"with the plugin / the platform's own part: {over_platform(figures, 'ours'):.2f}x"
        if "peer_ms" in figures:
            text += f" (peer {over_platform(figures, 'peer'):.2f}x)"
        lines.append(text)
    return lines


def per_enrollment_text(figures):
    text = (f"ours {figures['ours_ms']:.2f} ms, {figures['ours_statements']:g} statements "
            f"(the platform's part {figures['ours_platform_ms']:.2f} ms, {figures['ours_platform_statements']:g}; "
            f"first/last tenth {figures['ours_first_tenth_ms']:.2f}/{figures['ours_last_tenth_ms']:.2f} ms)")
    if "peer_ms" in figures:
        text += (f"; peer {figures['peer_ms']:.2f} ms, {figures['peer_statements']:g} statements "
                 f"(the platform's part {figures['peer_platform_ms']:.2f} ms, {figures['peer_platform_statements']:g}; "
                 f"at commit {figures['peer_commit_ms']:.2f} ms), then a task of {figures['peer_task_ms']:.2f} ms "
                 f"and {figures['peer_task_statements']:g} statements")
    return text


def rst_table(results):
    """The rows of a results.json as the README's list-table: one row per scenario, a cell per database."""
    databases = [db for db in DATABASES if any(r["database"] == db for r in results["rows"])]
    by_scenario = {}
    for r in results["rows"]:
        by_scenario.setdefault((r["scenario"], r["what"]), {})[r["database"]] = r

    def cell(r):
        if r is None:
            return "-"
        ours = r["ours"]
        if r["unit"] == "rows/s":
            text = f"{ours['median'] / 1000:,.0f}k rows/s" if ours["median"] >= 10_000 else f"{ours['median']:,.0f} rows/s"
        elif r["unit"] == "s":
            text = seconds_text(ours["median"])
        elif r["unit"] == "statements":
            worst = max(r["kinds"], key=lambda kind: r["kinds"][kind]["plugin_adds"])
            return f"+{ours['median']:g} statements at most ({worst})"
        else:
            text = f"{ours['median']:,.0f} ms" if ours["median"] >= 100 else f"{ours['median']:,.1f} ms"
        figures = r.get("per_enrollment")
        if "floor" in r:
            text += incomplete_text(r)
            text += (f", {r['ours_detail']['rows_per_second']:,} rows/s, {r['ours_peak_rss_mb']:,.0f} MB "
                     f"(floor {seconds_text(r['floor']['seconds'])}: {r['ours_over_floor']:.1f}×")
            if "peer" in r:
                text += (f"; peer {seconds_text(r['peer']['median'])}, {r['peer_peak_rss_mb']:,.0f} MB: "
                         f"{r['peer_over_ours']:.1f}×")
            text += ")"
        elif "surfaces" in r:
            text += f" ({r['slowest']})"
        elif "subjects_per_second" in r:
            text += f" ({r['subjects_per_second']:,} subjects/s)"
        elif figures:
            text += (f": {figures['ours_ms']:.2f} ms, {figures['ours_statements']:g} statements per enrollment, "
                     f"{over_platform(figures, 'ours'):.2f}× the platform's own part")
            if "peer" in r:
                text += (f" (peer {figures['peer_ms']:.2f} ms, {figures['peer_statements']:g} statements, "
                         f"{over_platform(figures, 'peer'):.2f}× the platform's; "
                         f"{r['peer_over_ours']:.1f}×)")
        elif "peer_task_ms" in r:
            text += (f" (peer {r['peer']['median']:,.0f} rows/s: {r['peer_task_ms']['median']:,.1f} ms a task, "
                     f"{r['peer_over_ours']:.1f}×)")
        elif "peer" in r and "aspects" in r:
            text += (f" (event-sink {r['peer']['median']:,.0f}, {r['peer_over_ours']:.1f}×; "
                     f"aspects {r['aspects']['median']:,.0f}, {r['aspects_over_ours']:.1f}×)")
        elif "peer" in r:
            text += f" (peer {r['peer']['median']:,.0f}, {r['peer_over_ours']:.1f}×)"
        return text

    names = {"sqlite": "SQLite", "mysql": "MariaDB / MySQL", "postgresql": "PostgreSQL"}
    lines = [".. list-table::", "   :header-rows: 1", "", "   * - scenario"]
    lines += [f"     - {names.get(db, db)}" for db in databases]
    for (_, what), cells in by_scenario.items():
        lines.append(f"   * - {what}")
        lines += [f"     - {cell(cells.get(db))}" for db in databases]
    return "\n".join(lines)


def incomplete_text(r):
    """' (NOT complete: ...)' when a side of a backfill row left rows missing or duplicated in ClickHouse."""
    found = []
    for side in ("ours_detail", "floor", "peer_detail"):
        held = (r.get(side) or {}).get("held") or {}
        missing = sum(table["missing"] for table in held.values())
        duplicated = sum(table["duplicated"] for table in held.values())
        if missing or duplicated:
            found.append(f"{side.removesuffix('_detail')}: {missing:,} rows missing, {duplicated:,} duplicated")
    return f" (NOT complete: {'; '.join(found)})" if found else ""


def seconds_text(seconds):
    if seconds >= 100:
        return f"{seconds:,.0f} s"
    return f"{seconds:,.1f} s" if seconds >= 1 else f"{seconds * 1000:,.0f} ms"


#: Issue 19's capture kinds, in the order the goals table lists them.
CAPTURE_KINDS = {"enrollment_created": "enroll", "enrollment_mode_changed": "mode", "profile_saved": "profile",
                 "email_changed": "email", "external_id_created": "external id"}


def goals_table(results):
    """
    Issue 19's goals, each beside its target, the peer and the floor, from the rows of a
    results.json (a goal whose scenario was not run is left out): the README's first table.
    """
    rows = results["rows"]
    databases = [db for db in DATABASES if any(r["database"] == db for r in rows)]
    by = {}
    for r in rows:
        by.setdefault(r["scenario"], {})[r["database"]] = r
    goals = []  # (goal, target, {database: text})

    def add(goal, target, cells):
        if any(cells.values()):
            goals.append((goal, target, cells))

    for mode in ("publish", "drain"):
        add(f"1. Capture (SNAPSHOT_AT={mode}): statements the plugin adds to a learner change's transaction: "
            + " · ".join(CAPTURE_KINDS.values()) + " (the platform's own in brackets)", "≤ 2 each",
            {db: " · ".join(f"+{r['kinds'][kind]['plugin_adds']:g}" for kind in CAPTURE_KINDS)
             + " (" + " · ".join(f"{r['kinds'][kind]['platform']:g}" for kind in CAPTURE_KINDS) + ")"
             for db, r in by.get(f"capture_{mode}", {}).items()})
    for name, mode in (("bulk_enroll", "publish"), ("bulk_enroll_deferred", "drain")):
        cells = {}
        for db, r in by.get(name, {}).items():
            figures = r["per_enrollment"]
            text = f"{over_platform(figures, 'ours'):.2f}×"
            if "peer_ms" in figures:
                text += f" (peer {over_platform(figures, 'peer'):.2f}×)"
            cells[db] = text
        what = next(iter(by.get(name, {}).values()), {}).get("what", "").split(" in one")[0].replace("bulk enroll, ", "")
        add(f"1. Bulk enroll of {what} in one transaction (SNAPSHOT_AT={mode}): with the plugin ÷ the platform's "
            "own part", "≤ 1.5× (no worse than the peer's)", cells)
    deferred = next(iter(by.get("bulk_enroll_deferred", {}).values()), {}).get("what", "")
    deferred = deferred.removeprefix("bulk enroll, ").split(" in one")[0]
    threaded = {db: r for name in sorted(by) if name.startswith("bulk_enroll_deferred_fill_")
                for db, r in by[name].items()}
    add(f"1. Deferred mode: the drain fills the requests of that bulk enroll ({deferred}), as configured by "
        "default (CLICKHOUSE_OUTBOX_FILL_THREADS = 2: two loops where the database skips locked rows, one on "
        "SQLite); in one loop after the arrow", "≥ 20,000 rows/s",
        {db: f"{r['ours']['median']:,.0f} rows/s" + (f" → {threaded[db]['ours']['median']:,.0f}" if db in threaded else "")
         for db, r in (by.get("bulk_enroll_deferred_fill") or by.get("bulk_enroll_deferred_drain", {})).items()})
    sizes = sorted({r["users"] for r in rows if r.get("group") == "backfill" and "users" in r})
    def backfill_cells(name):
        cells = {}
        for db, r in by.get(name, {}).items():
            text = seconds_text(r["ours"]["median"])
            if "floor" in r:
                text += f": {r['ours_over_floor']:.1f}× the floor ({seconds_text(r['floor']['seconds'])})"
            if "peer" in r:
                text += f"; peer {seconds_text(r['peer']['median'])}: {r['peer_over_ours']:.2f}×"
            cells[db] = text + incomplete_text(r)
        return cells

    for users in sizes:
        add(f"2. Backfill of {users:,} users (profile + external id) and {3 * users:,} enrollments, until ClickHouse "
            "holds every row (outbox_requeue --all --producer … --drain): ours ÷ the floor; the peer ÷ ours",
            "≤ 3× the floor; the peer ≥ 5×", backfill_cells(f"backfill_{users}"))
        each = by.get(f"backfill_dump_data_each_{users}", {})
        add(f"2. The same backfill of {users:,} users with the peer's command: dump_data_to_clickhouse --object "
            "user_profile --object external_id --object course_enrollment --drain (one command); a command per "
            "model (as the peer is run) after the arrow", "≤ 3× the floor; the peer ≥ 5×",
            {db: text + (f" → {seconds_text(each[db]['ours']['median'])}" if db in each else "")
                 + (f": {each[db]['peer_over_ours']:.2f}×" if "peer_over_ours" in each.get(db, {}) else "")
             for db, text in backfill_cells(f"backfill_dump_data_{users}").items()})
        if f"backfill_admin_{users}" in by:
            add(f"2. The same backfill of {users:,} users from the admin's dump form, with a celery worker (-c 2) and "
                "beat (the drain task every CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS, 10 s by default), until ClickHouse "
                "holds every row", "≤ 3× the floor; the peer ≥ 5×", backfill_cells(f"backfill_admin_{users}"))
    if sizes:
        cells = {}
        for db in databases:
            found = [by.get(f"backfill_{users}", {}).get(db) for users in sizes]
            if all(found):
                cells[db] = "ours " + " → ".join(f"{r['ours_peak_rss_mb']:,.0f}" for r in found) + " MB"
                if all("peer" in r for r in found):
                    cells[db] += "; peer " + " → ".join(f"{r['peer_peak_rss_mb']:,.0f}" for r in found) + " MB"
        add(f"2. Backfill's peak memory at {' → '.join(f'{users:,}' for users in sizes)} users", "flat", cells)
        for users in sizes:
            add(f"2. At {users:,} users: the slowest of the admin's \"Learners and tags\" (as it opens, filtered, "
                "searched), one subject's page and outbox_status",
                "< 1 s each", {db: f"{seconds_text(r['ours']['median'] / 1000)} ({r['slowest']})"
                               for db, r in by.get(f"surfaces_{users}", {}).items()})
    verified = sorted({(r["users"], r["scenario"].rsplit("_", 1)[0]) for r in rows if r.get("group") == "verify_learners"
                       and r["scenario"].startswith("verify_learners_")},
                      key=lambda found: (found[0], [f"verify_learners_{p}" for p in VERIFIED_PRODUCERS].index(found[1])
                                         if found[1] in [f"verify_learners_{p}" for p in VERIFIED_PRODUCERS] else 9))
    for users, name in verified:
        producer = name.removeprefix("verify_learners_")
        add(f"3. outbox_verify --producer {producer} after the backfill of {users:,} users", "minutes for 1,000,000",
            {db: f"{seconds_text(r['ours']['median'])}, {r['subjects_per_second']:,}/s "
                 f"(≈ {r['minutes_per_million']:g} min a million)"
             for db, r in by.get(f"{name}_{users}", {}).items()})
    for users in sorted({r["users"] for r in rows if r["scenario"].startswith("sweep_learners_")}):
        add(f"3. The sweep of the learner tables after the backfill of {users:,} users: nothing changed (the "
            "first sweep after the backfill: rows queued; after 1,000 profiles changed by update(): queued)",
            "every few minutes at 1,000,000",
            {db: f"{seconds_text(r['ours']['median'])}, {r['rows_per_second']:,} rows/s (first "
                 f"{seconds_text(r['first_after_backfill']['seconds'])}, {r['first_after_backfill']['queued']:,} "
                 f"queued; {r['after_update']['queued']:,} of {r['changed_by_update']:,} queued in "
                 f"{seconds_text(r['after_update']['seconds'])})"
             for db, r in by.get(f"sweep_learners_{users}", {}).items()})
    # Issue 19's goal 5 is the publish of 1,000 blocks; 10,000 is reported beside it, with no target of its own.
    for name, blocks, target in (("publish_1k", "1,000", "≥ 5× each"), ("publish_10k", "10,000", "reported")):
        add(f"5. Publish of {blocks} blocks: each peer's time ÷ ours (openedx-event-sink-clickhouse 1.1.1; "
            "platform-plugin-aspects 2.1.0)", target,
            {db: f"{r['ours']['median']:,.1f} ms: " + "; ".join(
                text for text in (f"event-sink {r['peer_over_ours']:.1f}×" if "peer" in r else "",
                                  f"aspects {r['aspects_over_ours']:.1f}×" if "aspects" in r else "") if text)
             for db, r in by.get(name, {}).items()})
    names = {"sqlite": "SQLite", "mysql": "MariaDB / MySQL", "postgresql": "PostgreSQL"}
    lines = [".. list-table::", "   :header-rows: 1", "", "   * - goal (issue 19)", "     - target"]
    lines += [f"     - {names.get(db, db)}" for db in databases]
    for goal, target, cells in goals:
        lines += [f"   * - {goal}", f"     - {target}"]
        lines += [f"     - {cells.get(db) or '-'}" for db in databases]
    return "\n".join(lines)


def merged(previous, results, names, databases):
    """
    `previous` with its rows of the scenarios `names` on `databases` replaced by `results`'
    (in place, the others kept; rows of a new scenario or database appended); the merge noted.
    """
    def base(scenario):
        """The scenario of SCENARIOS a row is of: its name, or its name and a variant (_1, _2) or _drain."""
        for name in names:
            rest = scenario.removeprefix(f"{name}_")
            if scenario == name or (rest != scenario and (rest.isdigit() or rest == "drain")):
                return name
        return None

    def key(r):
        """Rows of a group (capture, the learner scenarios: a row per mode, size, producer) are replaced one by one."""
        if r.get("group"):
            return (r["scenario"] if r["group"] in names else None, r["database"])
        return (base(r["scenario"]), r["database"])

    new_rows = {}
    for r in results["rows"]:
        new_rows.setdefault(key(r), []).append(r)
    rows, placed = [], set()
    for r in previous["rows"]:
        found = key(r)
        if found[0] is None or r["database"] not in databases or (r.get("group") and found not in new_rows):
            rows.append(r)
        elif found not in placed:
            rows.extend(new_rows.get(found, []))
            placed.add(found)
    rows.extend(r for found, group_rows in new_rows.items() if found not in placed for r in group_rows)
    merges = [*previous.get("merged", []),
              {"when": results["when"], "scenarios": names, "databases": databases, "seconds": results["seconds"],
               "clickhouse": results["clickhouse"]}]
    return {**previous, "rows": rows, "merged": merges}


def sizes_list(text):
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: numbers of users, comma-separated (e.g. 10000,50000)")
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("at least one size, each at least 1")
    return sizes


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, comma-separated")
    parser.add_argument("--databases", default=",".join(DATABASES))
    parser.add_argument("--rst", action="store_true",
                        help="print bench/results.json (or --output) as the README's tables; run nothing")
    parser.add_argument("--output", type=Path, default=RESULTS, metavar="PATH",
                        help="the results file written (and read by --merge, --rst); default bench/results.json")
    parser.add_argument("--merge", action="store_true",
                        help="with --only (and --databases): replace those scenarios' rows on those databases in the "
                             "existing bench/results.json (a run of the same size, --quick or not) and keep the "
                             "others, instead of writing only these")
    parser.add_argument("--sizes", type=sizes_list, default=None, metavar="N,N",
                        help="backfill, verify_learners: the site's users at each size (default: 100000,1000000; "
                             "with --quick 10000,50000)")
    parser.add_argument("--verify-max-users", type=int, default=None, metavar="N",
                        help="verify_learners: only at sizes up to N users (default: 100000; --quick 10000)")
    parser.add_argument("--peer-max-users", type=int, default=None, metavar="N",
                        help="backfill: run the peer's dump_data_to_clickhouse only up to N users (default: every "
                             "size; at a million it runs for over an hour on MariaDB)")
    parser.add_argument("--dump-data-max-users", type=int, default=None, metavar="N",
                        help="backfill: ours via dump_data_to_clickhouse and the admin's dump form too, at sizes up "
                             "to N users (default: 100000; --quick 0: never)")
    parser.add_argument("--surface-timeout", type=int, default=None, metavar="SECONDS",
                        help="backfill: a surface not answered in SECONDS is reported as such (default: 900; "
                             "--quick 120)")
    args = parser.parse_args()
    if args.rst:
        results = json.loads(args.output.read_text())
        print(goals_table(results))
        print()
        print(rst_table(results))
        return
    previous = None
    if args.merge:
        previous = json.loads(args.output.read_text())
        if previous["quick"] != args.quick:
            parser.error(f"--merge: {args.output} is from a {'quick' if previous['quick'] else 'full'} "
                         "run; merge a run of the same size")
    names = args.only.split(",")
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        parser.error(f"--only: unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    databases = args.databases.split(",")
    ensure_databases(databases)
    compile_sources()
    with clickhouse_server() as server:
        run(args, names, databases, previous, server)


def run(args, names, databases, previous, server):
    """Each scenario of `names` on `databases` against `server`; the results file written (merged into `previous`)."""
    started = time.monotonic()
    rows = []
    olx_dir = REPO / ".bench" / "olx"
    if "full_dump_olx" in names:
        sizes = SCENARIOS["full_dump_olx"][4 if args.quick else 3]
        run_json([*OURS, "write_exports", "--olx-dir", str(olx_dir), "--courses", str(sizes["courses"]),
                  "--blocks", str(sizes["blocks"])], our_env(DATABASES["sqlite"], server))
    for name in names:
        print(f"... {name}", file=sys.stderr, flush=True)
        if name.startswith("bulk_enroll"):
            rows.extend(measure_bulk_enroll(name, args.quick, databases, server))
        elif name == "capture":
            rows.extend(measure_capture(args.quick, databases, server))
        elif name in LEARNER_SCENARIOS:
            if name == next(n for n in names if n in LEARNER_SCENARIOS):  # both at once: one site serves them
                rows.extend(measure_learners(names, args.quick, databases, server, args))
        else:
            rows.extend(measure(name, args.quick, databases, server, olx_dir))
    results = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "clickhouse": server_data(server),
        "seconds": round(time.monotonic() - started, 1),
        "rows": rows,
    }
    seconds = results["seconds"]
    if previous is not None:
        results = merged(previous, results, names, databases)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(table(rows))
    print(f"\n{args.output} written after {seconds} s" + (" (merged)" if previous is not None else ""))


if __name__ == "__main__":
    main()
