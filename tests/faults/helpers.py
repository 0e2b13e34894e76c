"""
What the fault tests share: drainer processes, and checks of what reached ClickHouse
against what the outbox queued.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from django.db import connection
from django.db.models import F, Sum

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.clickhouse.tables import (
    COURSE_BLOCKS,
    COURSE_ENROLLMENT,
    COURSE_OVERVIEWS,
    COURSE_RELATIONSHIPS,
    EXTERNAL_ID,
    USER_PROFILE,
    get_table,
)
from clickhouse_outbox.models import Batch, Kind, OutboxEntry
from clickhouse_outbox.outbox.drain import drain_until_empty
from clickhouse_outbox.serializers.payloads import decompress
from tests.processes import ROOT

TABLES = (COURSE_OVERVIEWS, COURSE_BLOCKS, COURSE_RELATIONSHIPS)
#: The tables of the learner streams (enrollments, profiles, external ids).
LEARNER_TABLES = (COURSE_ENROLLMENT, USER_PROFILE, EXTERNAL_ID)
# What identifies a row of each table within a snapshot (the rest follows from it).
ROW_KEYS = {
    COURSE_OVERVIEWS.name: ("dump_id",),
    COURSE_BLOCKS.name: ("dump_id", "location"),
    COURSE_RELATIONSHIPS.name: ("dump_id", "parent_location", "child_location"),
    COURSE_ENROLLMENT.name: ("dump_id",),
    USER_PROFILE.name: ("dump_id",),
    EXTERNAL_ID.name: ("dump_id",),
}
#: Entries whose rows are not (or no longer) to be delivered.
GONE = [OutboxEntry.Status.SUPERSEDED, OutboxEntry.Status.SPLIT, OutboxEntry.Status.REMOVED]
LOCK_ERRORS = ("Deadlock", "deadlock", "Lock wait", "database is locked", "could not serialize")


def report(name, **figures):
    """One line of figures per test (shown with `pytest -s` or in the captured output)."""
    print(f"\nFAULTS {name}: " + ", ".join(f"{key}={value}" for key, value in figures.items()), flush=True)


def row_figures(figures):
    """What report() says about rows, from table_figures(): totals over the tables, then the tables one by one."""
    return {
        "rows_queued": sum(queued for queued, _, _ in figures.values()),
        "rows_found": sum(found for _, found, _ in figures.values()),
        "duplicates": sum(found - distinct for _, found, distinct in figures.values()),
        "per_table": figures,
    }


# -- drainer processes ---------------------------------------------------------------------


def database_sessions():
    """Sessions other than this process's on the test database (none to count on SQLite: no server)."""
    queries = {
        "postgresql": "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
        "mysql": "SELECT count(*) FROM information_schema.processlist WHERE db = DATABASE() AND id <> CONNECTION_ID()",
    }
    if connection.vendor not in queries:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(queries[connection.vendor])
        return cursor.fetchone()[0]


def wait_for_sessions_to_end(at_most, timeout=30):
    """
    Wait until a killed process's database sessions are gone from the server.

    A process killed just after writing its COMMIT to the socket still has it applied: the
    server reads the COMMIT before it notices the closed connection. Until the session has
    ended, what the outbox shows is not yet what the killed process left.
    """
    deadline = time.monotonic() + timeout
    while (sessions := database_sessions()) > at_most:
        assert time.monotonic() < deadline, f"{sessions} database sessions still open {timeout}s after a kill"
        time.sleep(0.01)


class Drainer:
    """`manage.py ARGS` in a process of its own, output to a file (a pipe could fill and block it)."""

    def __init__(self, *args, env, log_path):
        self.args = args
        self.sessions_before = database_sessions()
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in wait/kill)
        self.started = time.monotonic()
        self.process = subprocess.Popen(  # noqa: S603 (our own manage.py)
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, text=True,
        )

    @property
    def pid(self):
        return self.process.pid

    def running(self):
        return self.process.poll() is None

    def wait(self, timeout):
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"manage.py {' '.join(self.args)} did not finish in {timeout}s:\n{self.output()}")
        finally:
            self._log.close()

    def kill(self):
        """SIGKILL: no finally block, no atexit, no rollback by the process itself."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._log.close()
        wait_for_sessions_to_end(self.sessions_before)
        return self.process.returncode

    def output(self):
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


def run_drainers_until_empty(envs, tmp_path, timeout=120):
    """
    `outbox_drain --until-empty` in one process per env, all at once; (outputs, seconds) once
    all have ended, each having exited 0 without a lock error.
    """
    started = time.monotonic()
    drainers = [
        Drainer("outbox_drain", "--until-empty", "--timeout", str(timeout), env=env,
                log_path=tmp_path / f"drainer-{n}.log")
        for n, env in enumerate(envs)
    ]
    try:
        exit_codes = [drainer.wait(timeout=timeout + 30) for drainer in drainers]
    finally:
        for drainer in drainers:
            drainer.kill()
    elapsed = time.monotonic() - started
    outputs = [drainer.output() for drainer in drainers]
    assert exit_codes == [0] * len(drainers), "\n".join(f"--- drainer {n}:\n{out}" for n, out in enumerate(outputs))
    for output in outputs:
        for text in LOCK_ERRORS:
            assert text not in output, output
    return outputs, elapsed


# -- the outbox's side ---------------------------------------------------------------------


def live_entries(table):
    """The insert entries of `table` whose rows are to be delivered (not superseded, split or removed)."""
    return OutboxEntry.objects.filter(table=table, kind=Kind.INSERT).exclude(status__in=GONE)


def queued_rows(table):
    """Rows the outbox holds for `table` (every entry that was not superseded, split or removed)."""
    return live_entries(table).aggregate(n=Sum("row_count"))["n"] or 0


def queued_keys(table, entries=None):
    """Counter of row keys (ROW_KEYS) over the payloads of `entries` (default: all live entries of `table`)."""
    if entries is None:
        entries = live_entries(table)
    keys = Counter()
    for payload, encoding in entries.values_list("payload", "encoding").iterator(chunk_size=200):
        for line in decompress(payload, encoding).splitlines():
            row = json.loads(line)
            keys[tuple(str(row[column]) for column in ROW_KEYS[table])] += 1
    return keys


def batch_outcomes():
    return Counter(Batch.objects.values_list("status", flat=True))


def leftover_claims_were_reclaimed(left_by_trials):
    """Each claim a killed drainer left was claimed again: attempts - 1 summed over batches."""
    extra_claims = Batch.objects.aggregate(n=Sum(F("attempts") - 1))["n"] or 0
    assert extra_claims == left_by_trials, (extra_claims, left_by_trials)
    return extra_claims


def drain_everything(timeout, poll_interval=0.2):
    """
    drain_until_empty in this process after a test's faults; fails saying what was left: the
    backlog, what the drain did and how long it took, the open batches and the pending
    entries' tables (a bound, not a speed figure: under load a chdb store opened per query
    takes seconds a batch).
    """
    started = time.monotonic()
    total, left = drain_until_empty(timeout=timeout, poll_interval=poll_interval)
    if left != {"pending_entries": 0, "open_batches": 0, "failed_batches": 0}:
        open_batches = list(Batch.objects.exclude(status=Batch.Status.SENT).values_list(
            "id", "status", "attempts", "next_attempt_at", "lease_expires_at", "last_error"))
        pending = Counter(OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING)
                          .values_list("table", flat=True))
        raise AssertionError(f"left after {time.monotonic() - started:.1f} s of drain_until_empty(timeout={timeout}): "
                             f"{left}; the drain: {total} {total.errors}; open batches: {open_batches[:20]}; "
                             f"pending entries by table: {dict(pending)}")


def assert_all_sent():
    """Every live entry is in a batch, and every batch was sent."""
    assert not OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING).exists()
    assert not OutboxEntry.objects.filter(status=OutboxEntry.Status.BATCHED, batch__isnull=True).exists()
    assert batch_outcomes().keys() == {Batch.Status.SENT}, batch_outcomes()
    empty = list(Batch.objects.filter(entries__isnull=True))
    assert not empty, f"batches with no entries were claimed and sent: {empty}"
    for batch in Batch.objects.all():
        rows = batch.entries.aggregate(n=Sum("row_count"))["n"]
        assert rows == batch.row_count, (batch, rows)


# -- ClickHouse's side ---------------------------------------------------------------------


def ch_count(backend, table, where="1"):
    sql = f"SELECT count() AS n FROM {qualified_name(backend.database, table)} WHERE {where}"
    return int(backend.query(sql)[0]["n"])


def ch_distinct_rows(backend, table, where="1"):
    """Distinct rows, comparing every column: count() minus this is the number of exact duplicates."""
    columns = ", ".join(f"`{name}`" for name in get_table(table).column_names)
    sql = (f"SELECT count() AS n FROM (SELECT DISTINCT {columns} FROM {qualified_name(backend.database, table)} "
           f"WHERE {where})")
    return int(backend.query(sql)[0]["n"])


def ch_key_counts(backend, table, where="1"):
    """Counter of row keys in ClickHouse: key tuple -> copies."""
    columns = ROW_KEYS[table]
    select = ", ".join(f"toString(`{name}`) AS `{name}`" for name in columns)
    group = ", ".join(f"`{name}`" for name in columns)
    rows = backend.query(
        f"SELECT {select}, count() AS copies FROM {qualified_name(backend.database, table)} WHERE {where} "
        f"GROUP BY {group}"
    )
    return Counter({tuple(row[name] for name in columns): int(row["copies"]) for row in rows})


def not_retired(table, retired):
    """
    A filter leaving out the rows of retired users: the outbox keeps no copy of them (a
    retirement removed them), while ClickHouse keeps those of tables outside
    EVENT_SINK_CLICKHOUSE_PII_MODELS (course_enrollment, by default) that were sent before.
    """
    if not retired or "user_id" not in get_table(table).column_names:
        return "1"
    return f"user_id NOT IN ({', '.join(str(int(user_id)) for user_id in retired)})"


def table_figures(backend, tables=TABLES, retired=()):
    """Per table: (queued rows, rows in ClickHouse, distinct rows in ClickHouse), without the rows of `retired` users."""
    return {
        table.name: (queued_rows(table.name), ch_count(backend, table.name, not_retired(table.name, retired)),
                     ch_distinct_rows(backend, table.name, not_retired(table.name, retired)))
        for table in tables
    }


def assert_every_row_exactly_once(backend, tables=TABLES, retired=()):
    """
    Each queued row is in ClickHouse once: same keys, no copy, counts per table as queued
    (leaving out the rows of `retired` users, which the outbox no longer holds).
    """
    figures = table_figures(backend, tables, retired)
    for table in tables:
        queued = queued_keys(table.name)
        landed = ch_key_counts(backend, table.name, not_retired(table.name, retired))
        assert set(landed) == set(queued), (table.name, len(set(queued) - set(landed)), len(set(landed) - set(queued)))
        copies = Counter(landed.values())
        assert copies == Counter({1: len(queued)}), (table.name, copies)
        assert figures[table.name][0] == figures[table.name][1] == figures[table.name][2], (table.name, figures)
    return figures


def assert_every_row_at_least_once_and_duplicates_exact(backend, tables=TABLES):
    """
    Each queued row is in ClickHouse at least once, and every copy is an exact duplicate:
    the distinct rows (all columns compared) are exactly the rows queued.
    Returns ({table: (queued, found, distinct)}, {table: Counter(copies -> keys)}).
    """
    figures = table_figures(backend, tables)
    copies_by_table = {}
    for table in tables:
        queued = queued_keys(table.name)
        landed = ch_key_counts(backend, table.name)
        missing = set(queued) - set(landed)
        assert not missing, (table.name, len(missing), sorted(missing)[:3])
        assert set(landed) == set(queued), (table.name, "rows in ClickHouse that were never queued")
        queued_n, found, distinct = figures[table.name]
        assert distinct == queued_n, (table.name, figures[table.name], "a resend differed from the first send")
        assert found >= queued_n
        copies_by_table[table.name] = Counter(landed.values())
    return figures, copies_by_table
