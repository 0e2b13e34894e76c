"""
`make bench`: this project and its peer, side by side, in one run on this machine.

Runs each scenario of bench/ours.py on SQLite, MariaDB and PostgreSQL, and the peer's
(openedx-event-sink-clickhouse 1.1.1, bench/peer/) where it has one, alternating ours and
the peer's round by round, against the ClickHouse test server over HTTP. Writes
bench/results.json and prints a table: median, min-max, peak RSS, and the ratio to the peer.

    python bench/run.py [--quick] [--only publish_1k,drain ...] [--databases sqlite,mysql,postgresql]

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
RESULTS = HERE / "results.json"

DATABASES = {
    "sqlite": f"sqlite:///{REPO / '.bench' / 'bench.sqlite3'}",
    "mysql": os.environ.get("BENCH_MYSQL_URL", "mysql://root@127.0.0.1:3306/bench_outbox"),
    "postgresql": os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/bench_outbox"),
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
}


def run_json(command, env):
    out = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)  # noqa: S603
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def ensure_databases(databases):
    """The MariaDB/MySQL and PostgreSQL benchmark databases, created if missing (their tables by `ours.py reset`)."""
    import dj_database_url

    (REPO / ".bench").mkdir(exist_ok=True)
    for database in databases:
        config = dj_database_url.parse(DATABASES[database])
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
        CLICKHOUSE_DATABASE="bench_ours", OUTBOX_LOG_LEVEL="WARNING", OUTBOX_DEMO_DIR=str(REPO / ".bench"),
        DJANGO_SETTINGS_MODULE="outbox_project.settings",
    )
    return env


def peer_run(args, server, extra):
    env = dict(os.environ, PEER_BENCH_PASSWORD=server["CLICKHOUSE_TEST_PASSWORD"])
    command = [*PEER, "--url", server["CLICKHOUSE_TEST_URL"], "--user", server["CLICKHOUSE_TEST_USERNAME"],
               "--password-env", "PEER_BENCH_PASSWORD", "--database", "bench_peer", "--self-paced-as-string",
               "--drop-database", *args, *extra]
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
            samples, rss, peer_samples, peer_rss = [], [], [], []
            for _ in range(sizes["rounds"]):
                run_json([*OURS, "reset"], env)
                if name == "drain":
                    run_json([*OURS, "backlog", "--rows", str(sizes["rows"])], env)
                    result = run_json([*OURS, "drain", "--threads", str(variant)], env)
                    samples.append(result["rows_per_second"])
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
    return rows


def row(name, what, database, unit, samples, rss, peer_samples, peer_rss):
    result = {"scenario": name, "what": what, "database": database, "unit": unit, "ours": stats(samples),
              "ours_peak_rss_mb": rss}
    if peer_samples:
        result["peer"] = stats(peer_samples)
        result["peer_peak_rss_mb"] = peer_rss
        result["peer_over_ours"] = round(result["peer"]["median"] / result["ours"]["median"], 2)
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
    return "\n".join(lines)


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
            text = f"{ours['median'] / 1000:,.0f}k rows/s"
        else:
            text = f"{ours['median']:,.0f} ms" if ours["median"] >= 100 else f"{ours['median']:,.1f} ms"
        if "peer" in r:
            text += f" (peer {r['peer']['median']:,.0f}, {r['peer_over_ours']:.1f}×)"
        return text

    names = {"sqlite": "SQLite", "mysql": "MariaDB / MySQL", "postgresql": "PostgreSQL"}
    lines = [".. list-table::", "   :header-rows: 1", "", "   * - scenario"]
    lines += [f"     - {names.get(db, db)}" for db in databases]
    for (_, what), cells in by_scenario.items():
        lines.append(f"   * - {what}")
        lines += [f"     - {cell(cells.get(db))}" for db in databases]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats (about 2 minutes)")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, comma-separated")
    parser.add_argument("--databases", default=",".join(DATABASES))
    parser.add_argument("--rst", action="store_true", help="print bench/results.json as the README's table; run nothing")
    args = parser.parse_args()
    if args.rst:
        print(rst_table(json.loads(RESULTS.read_text())))
        return
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
        rows.extend(measure(name, args.quick, databases, server, olx_dir))
    results = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "seconds": round(time.monotonic() - started, 1),
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(table(rows))
    print(f"\n{RESULTS.relative_to(REPO)} written in {results['seconds']} s")


if __name__ == "__main__":
    main()
