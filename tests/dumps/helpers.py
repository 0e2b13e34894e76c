"""
What the dump job tests share: courses put in the OLX folder, what a job queued, and
waiting on database state (never on the clock) with a deadline.
"""

import time
from collections import Counter
from pathlib import Path

from clickhouse_outbox.dumps.run import REASON
from clickhouse_outbox.models import DumpJobItem, Snapshot
from clickhouse_outbox.sources.olx import folder_name
from clickhouse_outbox.testing.generator import write_course_export

ORG = "DumpX"


def export_path(exports_dir, number, org=ORG):
    """Where `add_courses` wrote the export of course `number` (to put it in place again)."""
    return Path(exports_dir) / f"{org}-C{number:03d}-R1"


def add_courses(source, exports_dir, count, *, blocks=12, org=ORG, seed=0):
    """Generate `count` OLX exports and add them to the source's folder; their keys as strings, sorted."""
    keys = []
    for number in range(count):
        path = export_path(exports_dir, number, org)
        if not path.exists():
            write_course_export(exports_dir, blocks=blocks, org=org, course=f"C{number:03d}", run="R1",
                                seed=seed + number)
        keys.append(str(source.add_export(path)))
    return sorted(keys)


def course_folder(source, course_key):
    return source.root / folder_name(course_key)


def dump_snapshots_per_course():
    """Counter: course key -> snapshots with the dump's reason."""
    return Counter(Snapshot.objects.filter(reason=REASON).values_list("subject", flat=True))


def course_rows(job):
    """{course key: (status, snapshot id, error)} of the job's course rows."""
    return {row.subject: (row.status, row.snapshot_id, row.error) for row in DumpJobItem.objects.filter(job=job)}


def statuses(job):
    return Counter(DumpJobItem.objects.filter(job=job).values_list("status", flat=True))


def wait_until(condition, what, timeout=30, poll=0.02, while_alive=None):
    """
    Poll `condition` until it returns something true (returned), or fail after `timeout`
    seconds; `while_alive()` (if given) runs on every poll and may raise.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if while_alive is not None:
            while_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)
