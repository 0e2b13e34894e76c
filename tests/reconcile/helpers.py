"""
What the verification tests share: courses published and delivered, the faults of issue 14
done to ClickHouse behind the outbox's back, and `outbox_verify` run as an operator runs it.
"""

import io
import json
import os
import time
import uuid
from datetime import timedelta

from django.core.management import CommandError, call_command
from django.db.models import F
from opaque_keys.edx.keys import CourseKey

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.clickhouse.tables import COURSE_BLOCKS, get_table
from clickhouse_outbox.models import OutboxEntry, Snapshot
from clickhouse_outbox.outbox.drain import drain_until_empty
from clickhouse_outbox.receivers import course_published
from clickhouse_outbox.sources.olx import folder_name
from clickhouse_outbox.testing.generator import write_course_export

BLOCKS = 10  # tree blocks per course; 12 course_blocks rows with the 2 detached ones


def publish_courses(olx_source, exports, count, org="VerifyX"):
    """`count` courses added to the OLX folder, published and delivered; their keys."""
    keys = []
    for number in range(count):
        export = write_course_export(exports, blocks=BLOCKS, org=org, course=f"V{number}", run="R1", seed=number)
        keys.append(str(olx_source.add_export(export)))
    for key in keys:
        course_published(sender=None, course_key=key)
    result, left = drain_until_empty(timeout=60)
    assert result.ok and not left["pending_entries"], (result, left)
    return keys


def latest(course_key):
    return Snapshot.objects.filter(subject=course_key).latest("id")


def wait_for_mutations(backend, timeout=60):
    deadline = time.monotonic() + timeout
    sql = f"SELECT count() AS n FROM system.mutations WHERE database = '{backend.database}' AND is_done = 0"
    while int(backend.query(sql)[0]["n"]):
        assert time.monotonic() < deadline, "a ClickHouse mutation did not finish"
        time.sleep(0.05)


def delete_rows(backend, table, where):
    """(a) and (b): rows deleted in ClickHouse by hand."""
    backend.command(f"ALTER TABLE {qualified_name(backend.database, table)} DELETE WHERE {where}")
    wait_for_mutations(backend)


def insert_again(backend, course_key, table=COURSE_BLOCKS.name):
    """(c): a batch of the course's rows stored a second time (a resend where nothing deduplicates)."""
    snapshot = latest(course_key)
    lines = b"".join(entry.lines() for entry in OutboxEntry.objects.filter(snapshot=snapshot, table=table))
    rows = lines.count(b"\n")
    # A token of its own: deduplication (where the server has it) does not take it for the first send.
    backend.insert(get_table(table), lines, rows=rows, dedup_token=f"again-{uuid.uuid4()}")
    return rows


def publish_behind_the_outbox(olx_source, course_key, tmp_path, minutes=10):
    """
    (d): the delivered snapshot made `minutes` older, and a newer version of the course (two
    more blocks) put in place now with the plugin off: no signal, no snapshot.
    """
    Snapshot.objects.filter(subject=course_key).update(created=F("created") - timedelta(minutes=minutes))
    key = CourseKey.from_string(course_key)
    newer = write_course_export(tmp_path / "newer", blocks=BLOCKS + 2, org=key.org, course=key.course, run=key.run,
                                seed=99)
    olx_source.add_export(newer)
    folder = olx_source.root / folder_name(key)
    now = time.time()
    os.utime(folder, (now, now))


def verify(*args):
    """`outbox_verify ARGS --json`: (exit status, the report)."""
    out = io.StringIO()
    try:
        call_command("outbox_verify", *args, "--json", stdout=out, stderr=io.StringIO())
        code = 0
    except CommandError as exc:
        code = exc.returncode
    return code, json.loads(out.getvalue())


def differ(report):
    """{subject: (verdict, details)} of what a report says differs."""
    return {row["subject"]: (row["verdict"], row["details"]) for row in report["differ"]}
