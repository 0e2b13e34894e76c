"""
The course-structure producer: course source → serializer → outbox, in the caller's transaction.
"""

import logging
import uuid
from dataclasses import dataclass

from django.db import transaction
from opaque_keys import InvalidKeyError
from opaque_keys.edx.keys import CourseKey

from clickhouse_outbox import conf
from clickhouse_outbox.outbox.clock import db_now
from clickhouse_outbox.outbox.enqueue import enqueue, record_failed_snapshot
from clickhouse_outbox.outbox.requested import request_snapshot
from clickhouse_outbox.serializers.course_structure import PRODUCER, serialize_course
from clickhouse_outbox.serializers.encoding import dump_time
from clickhouse_outbox.sources import get_course_source
from clickhouse_outbox.sources.base import CourseNotFound
from clickhouse_outbox.text import last_line

log = logging.getLogger(__name__)


def parse_course_key(value):
    """A CourseKey from a key or its string; a clear ValueError for anything else."""
    if isinstance(value, CourseKey):
        return value
    try:
        return CourseKey.from_string(str(value))
    except InvalidKeyError:
        raise ValueError(f"{value!r} is not a course key (expected e.g. course-v1:Org+Course+Run)") from None


@dataclass
class PreparedSnapshot:
    """A course read and serialized, not yet queued: its rows, or the error reading it raised."""

    subject: str
    dump_id: uuid.UUID
    time_last_dumped: str
    rows: dict | None = None
    error: Exception | None = None


def prepare_snapshot(course_key, *, source, now):
    """
    Read and serialize a course (`now`, the database's time, fixes `time_last_dumped`).
    Raises nothing: a dump job prepares a chunk of courses outside any transaction, so a
    slow read holds no lock, and records each failure.
    """
    dump_id = uuid.uuid4()
    time_last_dumped = dump_time(now)
    try:
        course = source.get_course(course_key)
        rows = serialize_course(course, dump_id=dump_id, time_last_dumped=time_last_dumped, snapshot_time=now)
    except Exception as exc:  # noqa: BLE001 (kept, with its traceback, for the caller to raise or record)
        return PreparedSnapshot(str(course_key), dump_id, time_last_dumped, error=exc)
    return PreparedSnapshot(str(course_key), dump_id, time_last_dumped, rows=rows)


def take_course_snapshot(course_key, reason, *, source=None):
    """
    Read the published course, serialize it and queue its rows; raise if any step fails.

    Runs in a savepoint of the caller's transaction: if the publish rolls back, nothing
    is queued; if this fails, the caller's transaction is left as it was.
    """
    course_key = parse_course_key(course_key)
    source = source or get_course_source()
    with transaction.atomic():
        prepared = prepare_snapshot(course_key, source=source, now=db_now())
        if prepared.error is not None:
            raise prepared.error
        return enqueue(PRODUCER, [prepared], reason=reason)[0]


def snapshot_or_record_failure(course_key, reason, *, source=None, record_not_found=True):
    """
    What the signal receivers call. The platform sends its signals with `send_robust`,
    which would reduce an exception to a log line: instead a failure is recorded as a
    failed snapshot (with the error) that a requeue takes again, and logged.

    With `record_not_found=False` (a key an operator typed, a course listed moments ago) a
    course the source does not know raises CourseNotFound instead: a failed snapshot of a
    course that does not exist would only be retried forever.
    """
    try:
        return take_course_snapshot(course_key, reason, source=source)
    except CourseNotFound as exc:
        if not record_not_found:
            raise
        failure = exc
    except Exception as exc:  # pylint: disable=broad-except
        failure = exc
    log.error("clickhouse_outbox: could not take a snapshot of %s (%s); recorded as failed", course_key, reason,
              exc_info=failure)
    return record_failed_snapshot(PRODUCER, str(course_key), failure, dump_id=uuid.uuid4(), reason=reason)


def snapshot_or_request(course_key, reason):
    """
    What a publish does: take the snapshot now, or (CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain")
    only request it, in the caller's transaction, for the drain to take.
    """
    if conf.snapshot_at() != "drain":
        return snapshot_or_record_failure(course_key, reason)
    try:
        subject = str(parse_course_key(course_key))
    except ValueError as exc:
        return record_failed_snapshot(PRODUCER, str(course_key), exc, dump_id=uuid.uuid4(), reason=reason)
    return request_snapshot(PRODUCER, subject, reason)


def queue_courses(course_keys, reason, *, source=None, on_progress=None):
    """
    Take a snapshot of each course, each in its own transaction: one course that cannot be
    read is recorded as a failed snapshot and the others go on; a course the source does not
    know is reported and recorded nowhere. Returns (snapshots, failures) where failures are
    (course_key, error message) pairs; `on_progress(index, course_key, snapshot or None)`.
    """
    source = source or get_course_source()
    snapshots, failures = [], []
    for index, course_key in enumerate(course_keys, start=1):
        try:
            course_key = parse_course_key(course_key)
        except ValueError as exc:
            failures.append((str(course_key), str(exc)))
            if on_progress:
                on_progress(index, course_key, None)
            continue
        try:
            with transaction.atomic():
                snapshot = snapshot_or_record_failure(course_key, reason, source=source, record_not_found=False)
        except CourseNotFound as exc:
            snapshot = None
            failures.append((str(course_key), str(exc)))
        else:
            if snapshot.status == snapshot.Status.FAILED:
                failures.append((str(course_key), last_line(snapshot.error)))
            else:
                snapshots.append(snapshot)
        if on_progress:
            on_progress(index, course_key, snapshot)
    return snapshots, failures
