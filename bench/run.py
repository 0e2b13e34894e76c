"""
`make bench`: this project and its peer, side by side, in one run on this machine.

Runs each scenario of bench/ours.py on SQLite, MariaDB and PostgreSQL, and the peer's
where it has one, alternating ours and the peer's round by round, against the ClickHouse
test server over HTTP. The peer of the course scenarios is openedx-event-sink-clickhouse
1.1.1 (bench/peer/); the peer of bulk_enroll is platform-plugin-aspects 2.1.0
(bench/peer/aspects/), on the same database server as ours, with the real Redis as its
celery broker. Writes bench/results.json and prints a table: median, min-max, peak RSS, and
the ratio to the peer.

    python bench/run.py [--quick] [--only publish_1k,drain ...] [--databases sqlite,mysql,postgresql] [--merge]
    python bench/run.py --rst

Speed is measured here, never asserted in a test.
"""

import argparse
import json
import os
import platform
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
                    {"enrollments": 10_000, "rounds": 1, "tasks": 500, "count": 1000},
                    {"enrollments": 2_000, "rounds": 1, "tasks": 200, "count": 200}),
    "bulk_enroll_deferred": ("bulk enroll, {enrollments:,} enrollments in one transaction, SNAPSHOT_AT=drain",
                             ["bulk_enroll", "--snapshot-at", "drain"], None,
                             {"enrollments": 10_000, "rounds": 1, "count": 1000},
                             {"enrollments": 2_000, "rounds": 1, "count": 200}),
    # A healthy site delivered (untimed), then outbox_verify over every course: its time, its
    # ClickHouse queries (a few per chunk of CLICKHOUSE_OUTBOX_VERIFY_CHUNK courses) and statements.
    "verify": ("verify a healthy site, {courses:,} courses x {blocks} blocks (outbox_verify)", ["verify"], None,
               {"courses": 5_000, "blocks": 20, "rounds": 1}, {"courses": 1_000, "blocks": 20, "rounds": 1}),
    # A drainer SIGKILLed while its send is held (its lease: the default 300 s); another
    # `outbox_drain --until-empty` (which looks again every second) sends its batch: from the kill to sent.
    "kill_recovery": ("recovery after a SIGKILLed drainer: kill to its batch sent by another (lease 300 s)",
                      ["kill_recovery"], None, {"repeat": 10, "rounds": 1}, {"repeat": 5, "rounds": 1}),
}


def run_json(command, env):
    out = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)  # noqa: S603
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


def clickhouse_env():
    out = subprocess.run([str(REPO / "scripts" / "clickhouse-test-server"), "env"], capture_output=True, text=True,
                         check=True)
    return dict(line.split("=", 1) for line in out.stdout.split() if "=" in line)


def our_env(database_url, server):
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLICKHOUSE_OUTBOX_")}
    env.update(
        DATABASE_URL=database_url, CLICKHOUSE_URL=server["CLICKHOUSE_TEST_URL"],
        CLICKHOUSE_USERNAME=server["CLICKHOUSE_TEST_USERNAME"], CLICKHOUSE_PASSWORD=server["CLICKHOUSE_TEST_PASSWORD"],
        CLICKHOUSE_DATABASE=os.environ.get("BENCH_CLICKHOUSE_DATABASE", "bench_ours"),
        OUTBOX_LOG_LEVEL="WARNING", OUTBOX_DEMO_DIR=str(REPO / ".bench"),
        DJANGO_SETTINGS_MODULE="outbox_project.settings",
    )
    return env


def peer_run(args, server, extra):
    env = dict(os.environ, PEER_BENCH_PASSWORD=server["CLICKHOUSE_TEST_PASSWORD"])
    command = [*PEER, "--url", server["CLICKHOUSE_TEST_URL"], "--user", server["CLICKHOUSE_TEST_USERNAME"],
               "--password-env", "PEER_BENCH_PASSWORD", "--database", "bench_peer", "--self-paced-as-string",
               "--drop-database", *args, *extra]
    return run_json(command, env)


def aspects_run(args, server, database):
    """The aspects peer (bench/peer/aspects/run_aspects.py) on `database`'s server, its own database there."""
    env = dict(os.environ, PEER_BENCH_PASSWORD=server["CLICKHOUSE_TEST_PASSWORD"])
    command = [*ASPECTS, "--url", server["CLICKHOUSE_TEST_URL"], "--user", server["CLICKHOUSE_TEST_USERNAME"],
               "--password-env", "PEER_BENCH_PASSWORD", "--database", "bench_aspects",
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
            unit = "rows/s" if name == "drain" else "ms"
            label = describe(what, sizes, threads=variant, workers=variant)
            rows.append(row(f"{name}" + (f"_{variant}" if variant else ""), label, database, unit, samples, max(rss),
                            peer_samples, max(peer_rss) if peer_rss else None))
            if verified and name == "kill_recovery":
                rows[-1]["kill_runs"] = [{k: v for k, v in r.items() if k in ("lease_secs", "lease_left_at_resend_secs",
                                                                              "lock_free_ms")} for r in verified]
            elif verified:
                rows[-1]["verify_runs"] = [{k: v for k, v in r.items() if k != "peak_rss_mb"} for r in verified]
    return rows


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
        for _ in range(sizes["rounds"]):
            run_json([*OURS, "reset"], env)
            runs.append(run_json([*OURS, *ours, "--enrollments", str(sizes["enrollments"]),
                                  "--count-enrollments", str(sizes["count"])], env))
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
    return rows


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
    if peer_runs:
        figures["peer_commit_ms"] = median(peer_runs, "commit_ms_per_enrollment")
        figures["peer_task_ms"] = median(peer_runs, "task_median_ms")
        figures["peer_task_statements"] = median(peer_runs, "task_statements")
    return figures


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
        lines.append(f"{r['what'][:64]:<64} {r['database']:<10} {cell:>28} {r['ours_peak_rss_mb']:>7} {peer:>12} {ratio:>7}")
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
        else:
            text = f"{ours['median']:,.0f} ms" if ours["median"] >= 100 else f"{ours['median']:,.1f} ms"
        figures = r.get("per_enrollment")
        if figures:
            text += f": {figures['ours_ms']:.2f} ms, {figures['ours_statements']:g} statements per enrollment"
            if "peer" in r:
                text += (f" (peer {figures['peer_ms']:.2f} ms, {figures['peer_statements']:g} statements, "
                         f"{r['peer_over_ours']:.1f}×)")
        elif "peer_task_ms" in r:
            text += (f" (peer {r['peer']['median']:,.0f} rows/s: {r['peer_task_ms']['median']:,.1f} ms a task, "
                     f"{r['peer_over_ours']:.1f}×)")
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

    new_rows = {}
    for r in results["rows"]:
        new_rows.setdefault((base(r["scenario"]), r["database"]), []).append(r)
    rows, placed = [], set()
    for r in previous["rows"]:
        key = (base(r["scenario"]), r["database"])
        if key[0] is None or r["database"] not in databases:
            rows.append(r)
        elif key not in placed:
            rows.extend(new_rows.get(key, []))
            placed.add(key)
    rows.extend(r for key, group in new_rows.items() if key not in placed for r in group)
    merges = [*previous.get("merged", []),
              {"when": results["when"], "scenarios": names, "databases": databases, "seconds": results["seconds"]}]
    return {**previous, "rows": rows, "merged": merges}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats (about 8 minutes)")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, comma-separated")
    parser.add_argument("--databases", default=",".join(DATABASES))
    parser.add_argument("--rst", action="store_true", help="print bench/results.json as the README's table; run nothing")
    parser.add_argument("--merge", action="store_true",
                        help="with --only (and --databases): replace those scenarios' rows on those databases in the "
                             "existing bench/results.json (a run of the same size, --quick or not) and keep the "
                             "others, instead of writing only these")
    args = parser.parse_args()
    if args.rst:
        print(rst_table(json.loads(RESULTS.read_text())))
        return
    previous = None
    if args.merge:
        previous = json.loads(RESULTS.read_text())
        if previous["quick"] != args.quick:
            parser.error(f"--merge: {RESULTS.relative_to(REPO)} is from a {'quick' if previous['quick'] else 'full'} "
                         "run; merge a run of the same size")
    server = clickhouse_env()
    databases = args.databases.split(",")
    ensure_databases(databases)
    started = time.monotonic()
    rows = []
    names = args.only.split(",")
    olx_dir = REPO / ".bench" / "olx"
    if "full_dump_olx" in names:
        sizes = SCENARIOS["full_dump_olx"][4 if args.quick else 3]
        run_json([*OURS, "write_exports", "--olx-dir", str(olx_dir), "--courses", str(sizes["courses"]),
                  "--blocks", str(sizes["blocks"])], our_env(DATABASES["sqlite"], server))
    for name in names:
        print(f"... {name}", file=sys.stderr, flush=True)
        if name.startswith("bulk_enroll"):
            rows.extend(measure_bulk_enroll(name, args.quick, databases, server))
        else:
            rows.extend(measure(name, args.quick, databases, server, olx_dir))
    results = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "seconds": round(time.monotonic() - started, 1),
        "rows": rows,
    }
    seconds = results["seconds"]
    if previous is not None:
        results = merged(previous, results, names, databases)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(table(rows))
    print(f"\n{RESULTS.relative_to(REPO)} written after {seconds} s" + (" (merged)" if previous is not None else ""))


if __name__ == "__main__":
    main()
