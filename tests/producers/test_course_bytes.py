"""
The course rows a publish queues, pinned byte for byte: the sample course and the benchmark's
1,000-block course, serialized with fixed ids, against the bytes the serializers wrote before
the publish path was made faster (issue 19, goal 5; docs/decisions/0018). A change of one byte
of a row, of the order of rows or of the digest that tells an unchanged snapshot fails here.
"""

import hashlib
import uuid
from datetime import datetime, timezone

import pytest

from clickhouse_outbox.models import Snapshot
from clickhouse_outbox.outbox.enqueue import chunk, enqueue
from clickhouse_outbox.outbox.registry import Prepared
from clickhouse_outbox.outbox.unchanged import digest
from clickhouse_outbox.producers.course_structure import COURSES
from clickhouse_outbox.serializers.course_structure import serialize_course
from clickhouse_outbox.sources.olx import SAMPLE_COURSE_DIR, read_olx_export
from clickhouse_outbox.testing.sources import generated_course

DUMP_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")
DUMPED = "2026-11-27 10:00:00.000001+00:00"
SNAPSHOT_TIME = datetime(2026, 11, 27, 10, 0, 0, 1, tzinfo=timezone.utc)

#: {course: ({table: (rows, sha256 of its lines)}, digest)}, written by the code before the change.
PINNED = {
    "sample": (
        {
            "course_overviews": (1, "7fbf593d8d37c41121c4237e52208deb71030a1ff39d8548f9f3b492139bdbca"),
            "course_blocks": (52, "dd3e481b0980cf09b8fa1ce8cfdd5ccb8c05a066cae1fb2b4bd2e3976bdd4b47"),
            "course_relationships": (45, "6d19e6d85f0d853049586ea1f16928ce7de80b79b2a260acdfb2dae01076011e"),
        },
        "798689ceb1ea36b0371d42d3f68bd4a9",
    ),
    "generated": (
        {
            "course_overviews": (1, "547bb3daf9f4e9e912d28f73e48d6846942ca897782af9fe9b54d3b6e40d9610"),
            "course_blocks": (1002, "3e165ad1d31941e6c2fb81f120ad2b42ee7c89f800e7a92166fcc3ab9543f5f1"),
            "course_relationships": (999, "c50c03bdcb209d0740e37f152fb8701d16cc14c67eeb83d8402ab764a9294442"),
        },
        "78f5641f4f9cd1b73d9c969db0c08715",
    ),
}


def course_named(name):
    return read_olx_export(SAMPLE_COURSE_DIR) if name == "sample" else generated_course(0, 1000)


def fingerprint(rows):
    return {table: (len(lines), hashlib.sha256(b"".join(lines)).hexdigest()) for table, lines in rows.items()}


def prepared(name):
    course = course_named(name)
    rows = serialize_course(course, dump_id=DUMP_ID, time_last_dumped=DUMPED, snapshot_time=SNAPSHOT_TIME)
    return Prepared(str(course.course_key), DUMP_ID, DUMPED, rows=rows)


@pytest.mark.parametrize("name", PINNED)
def test_the_course_rows_are_the_bytes_written_before(name):
    snapshot = prepared(name)
    assert fingerprint(snapshot.rows) == PINNED[name][0]
    assert digest(snapshot, chunk(snapshot)) == PINNED[name][1]


@pytest.mark.django_db
@pytest.mark.parametrize("name", PINNED)
def test_the_queued_entries_hold_those_bytes_and_the_digest(name):
    (queued,) = enqueue(COURSES, [prepared(name)], reason="published")
    stored = {}
    for entry in queued.entries.order_by("id"):
        stored.setdefault(entry.table, []).extend(entry.lines().splitlines(keepends=True))
    assert fingerprint(stored) == PINNED[name][0]
    assert Snapshot.objects.get(pk=queued.pk).digest == PINNED[name][1]


@pytest.mark.parametrize("name", PINNED)
def test_the_digest_of_the_lines_written_as_they_went_is_the_digest_of_the_rows(name):
    course = course_named(name)
    emptied = {}
    rows = serialize_course(course, dump_id=DUMP_ID, time_last_dumped=DUMPED, snapshot_time=SNAPSHOT_TIME,
                            emptied=emptied)
    assert set(emptied) == {"course_blocks", "course_relationships"}
    written = Prepared(str(course.course_key), DUMP_ID, DUMPED, rows=rows, emptied=emptied)
    plain = Prepared(str(course.course_key), DUMP_ID, DUMPED, rows=rows)
    assert digest(written, chunk(written)) == digest(plain, chunk(plain)) == PINNED[name][1]


def test_a_table_split_into_entries_is_digested_from_its_rows(settings):
    settings.CLICKHOUSE_OUTBOX_ENTRY_MAX_BYTES = 4096  # the blocks in many chunks: the emptied lines do not apply
    course = course_named("generated")
    emptied = {}
    rows = serialize_course(course, dump_id=DUMP_ID, time_last_dumped=DUMPED, snapshot_time=SNAPSHOT_TIME,
                            emptied=emptied)
    written = Prepared(str(course.course_key), DUMP_ID, DUMPED, rows=rows, emptied=emptied)
    plain = Prepared(str(course.course_key), DUMP_ID, DUMPED, rows=rows)
    assert len(chunk(written)) > 3
    assert digest(written, chunk(written)) == digest(plain, chunk(plain))
