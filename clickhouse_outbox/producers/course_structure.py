"""
The course-structure producer: a published course, read from the course source, as its
course_overviews, course_blocks and course_relationships rows.
"""

import uuid

from clickhouse_outbox.clickhouse.tables import COURSE_BLOCKS, COURSE_OVERVIEWS, COURSE_RELATIONSHIPS
from clickhouse_outbox import conf
from clickhouse_outbox.outbox import registry, snapshots
from clickhouse_outbox.outbox.registry import Prepared, Producer
from clickhouse_outbox.serializers.course_structure import serialize_course
from clickhouse_outbox.serializers.encoding import dump_time
from clickhouse_outbox.sources import get_course_source
from clickhouse_outbox.sources.keys import parse_course_key

PRODUCER = "course_structure"


class CourseStructure(Producer):
    """
    Courses from the course source (CLICKHOUSE_OUTBOX_COURSE_SOURCE, or `source`): on by
    default, whatever platform-plugin-aspects' course sink switch says (the Tutor plugin
    turns that sink off).
    """

    name = PRODUCER
    noun = ("course", "courses")
    source_noun = "course source"
    tables = (COURSE_OVERVIEWS, COURSE_BLOCKS, COURSE_RELATIONSHIPS)
    peer_model = "course_overviews"
    enabled_by_default = True
    read_at_once = 1  # a course may take seconds to read: a worker looks whether to stop after each

    def __init__(self, source=None):
        self._source = source

    @property
    def source(self):
        return self._source if self._source is not None else get_course_source()

    @property
    def dump_chunk(self):
        return conf.dump_chunk_courses()

    def parse_subject(self, value):
        return str(parse_course_key(value))

    def prepare(self, subjects, *, now):
        """
        Read and serialize each course (`now`, the database's time, fixes `time_last_dumped`),
        outside any transaction when a dump job prepares a chunk: a slow read holds no lock.
        """
        source = self.source
        return [prepare_course(subject, source=source, now=now) for subject in subjects]

    def all_subjects(self):
        return [str(key) for key in self.source.course_keys()]

    def subjects_changed_since(self, since):
        return [str(key) for key in self.source.course_keys_changed_since(since)]

    def subject_column(self, table):
        return "course_key"

    def versions(self, subjects):
        return {str(key): when for key, when in self.source.published_times(subjects).items()}

    def knows(self, subject):
        """Whether the source knows the course (CourseNotFound / CourseSourceError say otherwise)."""
        self.source.get_course(subject)
        return True


def prepare_course(course_key, *, source, now):
    dump_id = uuid.uuid4()
    time_last_dumped = dump_time(now)
    try:
        course = source.get_course(course_key)
        emptied = {}
        rows = serialize_course(course, dump_id=dump_id, time_last_dumped=time_last_dumped, snapshot_time=now,
                                emptied=emptied)
    except Exception as exc:  # noqa: BLE001 (kept, with its traceback, for the caller to raise or record)
        return Prepared(str(course_key), dump_id, time_last_dumped, error=exc)
    return Prepared(str(course_key), dump_id, time_last_dumped, rows=rows, emptied=emptied)


def producer(source=None):
    """The registered course producer, or one reading `source` (tests, the bench, an operator's own source)."""
    return COURSES if source is None else CourseStructure(source)


# What the receivers, the commands and the admin call, for a course key.

def take_course_snapshot(course_key, reason, *, source=None):
    """Read the published course, serialize it and queue its rows; raise if any step fails."""
    return snapshots.take(producer(source), course_key, reason)


def snapshot_or_record_failure(course_key, reason, *, source=None, record_not_found=True):
    """`take_course_snapshot`, a failure recorded as a failed snapshot (see outbox.snapshots)."""
    return snapshots.take_or_record_failure(producer(source), course_key, reason, record_not_found=record_not_found)


def snapshot_or_request(course_key, reason):
    """What a publish does: take the snapshot now, or (CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain") request it."""
    return snapshots.take_or_request(COURSES, course_key, reason)


def queue_courses(course_keys, reason, *, source=None, on_progress=None):
    """A snapshot of each course, each in its own transaction (see outbox.snapshots.queue_subjects)."""
    return snapshots.queue_subjects(producer(source), course_keys, reason, on_progress=on_progress)


COURSES = registry.register(CourseStructure())
