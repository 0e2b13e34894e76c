"""
Course keys from what operators, settings, signals and folders hand over: one parser, so
every path accepts the same strings, refuses the rest with the same message, and names a
course the same way (without a branch or version: a course's subject is the course).
"""

from opaque_keys import InvalidKeyError
from opaque_keys.edx.keys import CourseKey, UsageKey
from opaque_keys.edx.locator import LibraryLocator


class NotACourseKey(ValueError):
    """The value is not a course key; the message quotes it and shows the expected form."""


def parse_course_key(value) -> CourseKey:
    """A CourseKey (without branch or version) from a key or its string, or NotACourseKey."""
    try:
        key = value if isinstance(value, CourseKey) else CourseKey.from_string(str(value))
        return without_branch(key)
    except InvalidKeyError:  # not a key; or a version alone, which names no course
        raise NotACourseKey(f"{value!r} is not a course key (expected e.g. course-v1:Org+Course+Run)") from None


def course_key_of(object_id):
    """
    The course a course key or a usage key (a block of a course) names, without branch or
    version; None for anything else: a library or its blocks, a malformed id.
    """
    try:
        key = parse_course_key(object_id)
    except NotACourseKey:
        try:
            key = without_branch(UsageKey.from_string(str(object_id)).context_key)
        except InvalidKeyError:
            return None
    return key if isinstance(key, CourseKey) and not isinstance(key, LibraryLocator) else None


def without_branch(key):
    """The key (course or usage) without its branch and version, as the tables store it."""
    key = key.for_branch(None) if hasattr(key, "for_branch") else key
    if getattr(key, "version_guid", None) is not None:
        key = key.replace(version_guid=None)
    return key
