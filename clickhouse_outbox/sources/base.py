"""
What sources raise, and the published course as every course source hands it to the serializers.
"""

from dataclasses import dataclass, field
from datetime import datetime

from clickhouse_outbox.sources.keys import NotACourseKey, parse_course_key


class SubjectSourceError(Exception):
    """A subject (a course, a user's profile, a tag...) could not be read or listed; the message says why."""


class SubjectNotFound(SubjectSourceError):
    """The source does not know this subject (a mistyped key, a row deleted since)."""


class CourseSourceError(SubjectSourceError):
    """The course could not be read; the message says which course and why."""


class CourseNotFound(CourseSourceError, SubjectNotFound):
    """No published course with this key exists in the source."""


@dataclass
class Block:
    """
    One published XBlock.

    `location` is a usage key string without branch or version (`block-v1:...`).
    `children` are child locations in the order the parent lists them.
    `fields` holds the few extra fields the serializers read (video start/end times...).
    """

    location: str
    block_type: str
    display_name: str
    children: list = field(default_factory=list)
    graded: bool = False
    completion_mode: str = ""
    edited_on: str = ""
    fields: dict = field(default_factory=dict)
    tags: list = field(default_factory=list)


@dataclass
class PublishedCourse:
    """
    The published version of one course.

    `blocks` maps every block of the course tree by location; the tree starts at `root`
    (the course block). `detached` lists blocks outside the tree (about, course_info,
    static_tab) in a stable order. Dates are timezone-aware datetimes or None; `advertised_start`,
    `announcement`, `effort` and `external_id` are None when the course does not set them.
    """

    course_key: object  # opaque_keys CourseKey
    root: str
    blocks: dict
    detached: list = field(default_factory=list)
    display_name: str = ""
    start: datetime | None = None
    end: datetime | None = None
    enrollment_start: datetime | None = None
    enrollment_end: datetime | None = None
    self_paced: bool = False
    advertised_start: str | None = None
    announcement: datetime | None = None
    lowest_passing_grade: float = 0.5
    invitation_only: bool = False
    max_student_enrollments_allowed: int | None = None
    effort: str | None = None
    enable_proctored_exams: bool = False
    entrance_exam_enabled: bool = False
    external_id: str | None = None
    language: str = ""
    tags: list = field(default_factory=list)
    created: datetime | None = None
    modified: datetime | None = None


def source_course_key(course_key):
    """The CourseKey a source is asked for; CourseNotFound when it is not a course key at all."""
    try:
        return parse_course_key(course_key)
    except NotACourseKey as exc:
        raise CourseNotFound(str(exc)) from None


class CourseSource:
    """Reads published courses. Implementations: `olx.OlxFolderSource`, `modulestore.ModulestoreSource`."""

    def get_course(self, course_key) -> PublishedCourse:
        """The published course, or CourseNotFound / CourseSourceError."""
        raise NotImplementedError

    def course_keys(self):
        """Every course key the source knows, for full dumps."""
        raise NotImplementedError

    def published_times(self, course_keys):
        """{course key: when its published version last changed} for the courses the source can tell (else {})."""
        return {}

    def course_keys_changed_since(self, since):
        """The course keys whose published version changed at or after `since` (an aware datetime)."""
        raise CourseSourceError(
            f"{type(self).__name__} cannot tell which courses changed since a time; dump all courses instead."
        )
