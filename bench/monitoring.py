"""
What a scrape of /clickhouse_outbox/metrics (and the drain's report) costs on a big outbox:
`monitoring.readings.read()` and the collector's encoding, timed on an outbox holding
--sizes entries already sent (what retention keeps: the bulk of a busy site's outbox), a
backlog of --pending entries, and the batches of the last window. Writes the medians to
bench/monitoring-results.json (--output).

    .venv/bin/python bench/monitoring.py [--databases sqlite,mysql,postgresql] [--sizes 10000,1000000]

Uses its own databases (BENCH_MONITORING_*_URL); speed is measured here, never in a test.
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
DATABASES = {
    "sqlite": f"sqlite:///{REPO / '.bench' / 'monitoring.sqlite3'}",
    "mysql": os.environ.get("BENCH_MONITORING_MYSQL_URL", "mysql://root@127.0.0.1:3306/outbox_metrics_bench"),
    "postgresql": os.environ.get("BENCH_MONITORING_POSTGRES_URL",
                                 "postgres://postgres@127.0.0.1:5432/outbox_metrics_bench"),
}
ROWS_PER_ENTRY = 50
ENTRIES_PER_BATCH = 50


def fill(sent, pending, recent_batches):
    """
    The outbox: `sent` entries in sent batches (hours old), `recent_batches` sent in the window,
    `pending` waiting. Inserted by the database itself (INSERT ... SELECT over a recursive CTE).
    """
    from datetime import timedelta

    from django.db import connection

    from clickhouse_outbox.db import db_now

    quote = connection.ops.quote_name
    token = {"postgresql": "md5(CAST(i AS TEXT))::uuid", "mysql": "UUID()"}.get(connection.vendor, "printf('%%032x', i)")
    now = db_now()
    old = now - timedelta(hours=6)
    table = "CASE i %% 3 WHEN 0 THEN 'course_blocks' WHEN 1 THEN 'course_enrollment' ELSE 'user_profile' END"
    numbers = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %s) "
    batch_columns = ", ".join(quote(name) for name in (
        "table", "kind", "status", "token", "row_count", "attempts", "attempts_at_requeue", "last_error",
        "server_error", "created", "sent_at"))
    entry_columns = ", ".join(quote(name) for name in (
        "table", "kind", "status", "batch_id", "row_count", "payload", "encoding", "created"))
    total = sent // ENTRIES_PER_BATCH
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":  # MariaDB stops a recursive CTE at 1,000 rows by default
            cursor.execute("SET SESSION max_recursive_iterations = 100000000")
        cursor.execute(
            f"INSERT INTO clickhouse_outbox_batch ({batch_columns}) {numbers}"
            f"SELECT {table}, 'insert', 'sent', {token}, %s, 1, 0, '', %s, "
            f"CASE WHEN i > %s THEN %s ELSE %s END, CASE WHEN i > %s THEN %s ELSE %s END FROM n",
            [total + recent_batches, ROWS_PER_ENTRY * ENTRIES_PER_BATCH, False, total, now, old, total, now, old],
        )
        cursor.execute(
            f"INSERT INTO clickhouse_outbox_outboxentry ({entry_columns}) {numbers}"
            f"SELECT b.{quote('table')}, 'insert', 'batched', b.id, %s, %s, '', b.created "
            "FROM clickhouse_outbox_batch b CROSS JOIN n",
            [ENTRIES_PER_BATCH, ROWS_PER_ENTRY, b""],
        )
        cursor.execute(
            f"INSERT INTO clickhouse_outbox_outboxentry ({entry_columns}) {numbers}"
            f"SELECT {table}, 'insert', 'pending', NULL, %s, %s, '', %s FROM n",
            [pending, ROWS_PER_ENTRY, b"", now - timedelta(seconds=60)],
        )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def measure(rounds):
    from prometheus_client import CollectorRegistry, generate_latest

    from clickhouse_outbox.monitoring.prometheus import OutboxCollector
    from clickhouse_outbox.monitoring.readings import read

    reads, scrapes = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        readings = read()
        reads.append((time.perf_counter() - started) * 1000)
        registry = CollectorRegistry()
        registry.register(OutboxCollector())
        started = time.perf_counter()
        generate_latest(registry)
        scrapes.append((time.perf_counter() - started) * 1000)
    return {"read_ms": round(statistics.median(reads), 2), "read_ms_max": round(max(reads), 2),
            "scrape_ms": round(statistics.median(scrapes), 2), "scrape_ms_max": round(max(scrapes), 2),
            "unsent_rows": readings.unsent_rows(), "recent_batches_sent": readings.recent_batches_sent}


def child(options):
    """In a process of its own, on DATABASE_URL: migrate, fill, measure; prints JSON."""
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outbox_project.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    started = time.perf_counter()
    fill(options.sent, options.pending, options.recent_batches)
    filled = time.perf_counter() - started
    print(json.dumps({"fill_seconds": round(filled, 1), **measure(options.rounds)}))


def ensure_database(url):
    if url.startswith("sqlite"):
        (REPO / ".bench").mkdir(exist_ok=True)
        return
    name = url.rsplit("/", 1)[1]
    if url.startswith("mysql"):
        subprocess.run(["mysql", "-h", "127.0.0.1", "-u", "root", "-e", f"CREATE DATABASE IF NOT EXISTS {name}"],
                       check=True)
    else:
        found = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc",
                                f"SELECT 1 FROM pg_database WHERE datname = '{name}'"], capture_output=True, text=True)
        if not found.stdout.strip():
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f"CREATE DATABASE {name}"], check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--databases", default="sqlite,mysql,postgresql")
    parser.add_argument("--sizes", default="10000,1000000", help="entries already sent, one run per size")
    parser.add_argument("--sent", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--pending", type=int, default=20_000, help="entries waiting")
    parser.add_argument("--recent-batches", type=int, default=200, help="batches sent in the window")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--output", default=str(HERE / "monitoring-results.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        return child(options)
    rows = []
    for sent in options.sizes.split(","):
        for name in options.databases.split(","):
            url = DATABASES[name]
            ensure_database(url)
            env = dict(os.environ, DATABASE_URL=url)
            args = [sys.executable, __file__, "--child", "--sent", sent, "--pending", str(options.pending),
                    "--recent-batches", str(options.recent_batches), "--rounds", str(options.rounds)]
            run = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
            if run.returncode:
                sys.exit(f"{name}: {run.stderr[-2000:]}")
            result = json.loads(run.stdout.strip().splitlines()[-1])
            rows.append({"database": name, "sent_entries": int(sent), "sent_rows": int(sent) * ROWS_PER_ENTRY,
                         **result})
            print(name, sent, result, flush=True)
    Path(options.output).write_text(json.dumps({
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "outbox": {"entries_per_batch": ENTRIES_PER_BATCH, "rows_per_entry": ROWS_PER_ENTRY,
                   "pending_entries": options.pending, "recent_batches": options.recent_batches},
        "rows": rows,
    }, indent=2) + "\n")
    return None


if __name__ == "__main__":
    main()
