"""
factory-boy factories: generated courses, and outbox snapshots taken of them the way a
publish takes them (through the producer, so the rows are the real serialized rows).
"""

import factory

from clickhouse_outbox.models import Batch
from clickhouse_outbox.producers.course_structure import COURSES, CourseStructure, take_course_snapshot
from clickhouse_outbox.sources.base import CourseNotFound, CourseSource
from clickhouse_outbox.testing.generator import generate_published_course


class MemorySource(CourseSource):
    """A course source holding PublishedCourse objects in memory."""

    def __init__(self, courses=()):
        self.courses = {str(course.course_key): course for course in courses}

    def add(self, course):
        self.courses[str(course.course_key)] = course
        return course.course_key

    def get_course(self, course_key):
        try:
            return self.courses[str(course_key)]
        except KeyError:
            raise CourseNotFound(f"No course {course_key} in this memory source") from None

    def course_keys(self):
        return sorted(course.course_key for course in self.courses.values())

    def published_times(self, course_keys):
        """The courses' `modified` times (set by the test: when each was last published)."""
        wanted = {str(key) for key in course_keys}
        return {key: course.modified for key, course in self.courses.items() if key in wanted and course.modified}

    def course_keys_changed_since(self, since):
        """The courses whose `modified` time (set by the test: when it was last published) is at or after `since`."""
        return sorted(
            course.course_key
            for course in self.courses.values()
            if course.modified is not None and course.modified >= since
        )


class PublishedCourseFactory(factory.Factory):
    """A synthetic published course of `blocks` tree blocks (the generator's shape)."""

    class Meta:
        model = generate_published_course

    blocks = 30
    org = "FactoryX"
    course = factory.Sequence(lambda n: f"C{n}")
    run = "R1"
    seed = factory.Sequence(lambda n: n)


class CourseSnapshotFactory(factory.Factory):
    """A queued snapshot of a generated course, taken as a publish takes it."""

    class Meta:
        model = take_course_snapshot

    course = factory.SubFactory(PublishedCourseFactory)
    reason = "published"

    @classmethod
    def _create(cls, model_class, course, reason):
        return model_class(course.course_key, reason, source=MemorySource([course]))


class BatchFactory(factory.django.DjangoModelFactory):
    """A batch that ran out of attempts, as the admin and `outbox_requeue --failed` find them."""

    class Meta:
        model = Batch

    table = "course_blocks"
    status = Batch.Status.FAILED
    attempts = 12
    row_count = 0
    last_error = "Code: 27, e.displayText() = DB::Exception: Cannot parse input"
    error_code = 27


def with_source(source):
    """Producer overrides that read courses from `source` (for run_job, plan, take_requested...)."""
    return {COURSES.name: CourseStructure(source)}


def as_courses(keys):
    """(producer, subject) pairs for course keys: a dump job's selected subjects."""
    return [(COURSES.name, str(key)) for key in keys]
