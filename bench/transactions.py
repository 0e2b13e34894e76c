"""
What the bulk-enroll scenarios measure of one transaction, shared by ours (bench/ours.py)
and the peer's (bench/peer/aspects/run_aspects.py, in its own virtualenv): the standard
library only, so both import it.
"""

import gc
import re
import time


def enroll_all(users, course_key, enroll, atomic):
    """
    ONE transaction (`atomic()`) enrolling every user; times the whole, the loop, the commit
    (with its on_commit callbacks) and the first and last tenth, per enrollment.
    """
    gc.collect()
    tenth = max(1, len(users) // 10)
    marks = []
    started = time.perf_counter()
    with atomic():
        for index, user in enumerate(users, start=1):
            enroll(user, course_key)
            if index % tenth == 0 or index == len(users):
                marks.append((index, time.perf_counter()))
        before_commit = time.perf_counter()
    ended = time.perf_counter()
    first_index, first_at = marks[0]
    last_index, last_at = marks[-2] if len(marks) > 1 else (0, started)
    return {
        "ms": (ended - started) * 1000,
        "loop_ms": round((before_commit - started) * 1000, 3),
        "commit_ms": round((ended - before_commit) * 1000, 3),
        "first_tenth_ms_per_enrollment": round((first_at - started) * 1000 / first_index, 4),
        "last_tenth_ms_per_enrollment": round((marks[-1][1] - last_at) * 1000 / (marks[-1][0] - last_index), 4),
    }


class StatementCounter:
    """A connection.execute_wrapper counting statements (savepoints included) and their time, by verb and table."""

    def __init__(self):
        self.count = 0
        self.kinds = {}
        self.seconds = {}

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        kind = statement_kind(sql)
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds[kind] = self.seconds.get(kind, 0.0) + time.perf_counter() - started

    def ms_per_item(self, items):
        """Milliseconds in the database driver by kind, per item (the rest of the time is Python: the ORM, serializing)."""
        ordered = sorted(self.seconds.items(), key=lambda item: -item[1])
        return {kind: round(seconds * 1000 / items, 3) for kind, seconds in ordered if round(seconds * 1000 / items, 3)}


def statement_kind(sql):
    """ "SELECT student_courseenrollment", "SAVEPOINT"...: what a statement does, to what."""
    verb = sql.split(None, 1)[0].upper()
    table = re.search(r"""\b(?:FROM|INTO|UPDATE)\s+[`"]?(\w+)""", sql, re.IGNORECASE)
    return f"{verb} {table.group(1)}" if table and verb != "RELEASE" else verb


def per_item(kinds, items):
    """Statements by kind, per item (most first; those of the transaction itself, under 0.01 an item, left out)."""
    ordered = sorted(kinds.items(), key=lambda item: -item[1])
    return {kind: round(count / items, 2) for kind, count in ordered if round(count / items, 2)}


def figures(n, measured, platform, statements, platform_statements, counted):
    """
    The figures both sides report of a bulk enroll: `measured` and `platform` are
    `enroll_all`'s (with the sink, and the platform's own part alone) over `n` users;
    `statements` and `platform_statements` the counters of the `counted` enrollments.
    """
    items = len(counted)
    return {
        "samples_ms": [round(measured["ms"], 3)],
        "ms": round(measured["ms"], 3),
        "ms_per_enrollment": round(measured["ms"] / n, 4),
        "loop_ms": measured["loop_ms"],
        "commit_ms": measured["commit_ms"],
        "first_tenth_ms_per_enrollment": measured["first_tenth_ms_per_enrollment"],
        "last_tenth_ms_per_enrollment": measured["last_tenth_ms_per_enrollment"],
        "platform_ms": round(platform["ms"], 3),
        "platform_ms_per_enrollment": round(platform["ms"] / n, 4),
        "own_ms_per_enrollment": round((measured["ms"] - platform["ms"]) / n, 4),
        "statements_counted_over": items,
        "statements_per_enrollment": round(statements.count / items, 2),
        "platform_statements_per_enrollment": round(platform_statements.count / items, 2),
        "own_statements_per_enrollment": round((statements.count - platform_statements.count) / items, 2),
        "statements_by_kind": per_item(statements.kinds, items),
        "platform_statements_by_kind": per_item(platform_statements.kinds, items),
        # In the counted passes: the time in the database driver by kind, and each pass's whole time.
        "statement_ms_by_kind": statements.ms_per_item(items),
        "counted_ms_per_enrollment": round(statements.total_seconds * 1000 / items, 4),
        "platform_statement_ms_by_kind": platform_statements.ms_per_item(items),
        "platform_counted_ms_per_enrollment": round(platform_statements.total_seconds * 1000 / items, 4),
    }
