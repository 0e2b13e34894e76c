"""
A course source of generated courses, held in memory: the benchmark's "courses in memory",
usable by worker processes through CLICKHOUSE_OUTBOX_COURSE_SOURCE.

`GeneratedSource()` reads OUTBOX_GENERATED_COURSES ("200x400": 200 courses of 400 blocks)
from the environment. The courses are those the peer's benchmark builds: org GenX, course
Gen101, runs R1..Rn, seeds 0..n-1; all are generated when the source is made, so reading
one later costs nothing.
"""

import functools
import os
from datetime import UTC, datetime

from clickhouse_outbox.sources.base import CourseNotFound, CourseSource
from clickhouse_outbox.testing.generator import generate_published_course

ENV = "OUTBOX_GENERATED_COURSES"
#: When the generated courses were "published": before any snapshot of them, so none is stale.
PUBLISHED_AT = datetime(2026, 1, 1, tzinfo=UTC)


def generated_course(index, blocks):
    return generate_published_course(blocks, org="GenX", course="Gen101", run=f"R{index + 1}", seed=index)


@functools.cache
def generated_courses(courses, blocks):
    """{course key: PublishedCourse}, made once per process (a source is made per use)."""
    return {str(course.course_key): course for course in (generated_course(i, blocks) for i in range(courses))}


class GeneratedSource(CourseSource):
    def __init__(self, courses=None, blocks=None):
        if courses is None:
            courses, blocks = (int(part) for part in os.environ.get(ENV, "1x1000").split("x"))
        self.courses = generated_courses(courses, blocks)

    def get_course(self, course_key):
        try:
            return self.courses[str(course_key)]
        except KeyError:
            raise CourseNotFound(f"{course_key}: not one of the {len(self.courses)} generated courses") from None

    def course_keys(self):
        return sorted((course.course_key for course in self.courses.values()), key=str)

    def published_times(self, course_keys):
        """The same time for each (the verification's source check runs, and finds nothing newer)."""
        return {str(key): PUBLISHED_AT for key in course_keys if str(key) in self.courses}
