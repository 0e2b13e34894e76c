"""The one course-key parser every path uses (sources, producers, commands, receivers)."""

import pytest
from opaque_keys.edx.keys import CourseKey

from clickhouse_outbox.producers.course_structure import COURSES
from clickhouse_outbox.sources.keys import NotACourseKey, course_key_of, parse_course_key

KEY = "course-v1:Org+C101+T1"


@pytest.mark.parametrize("value", [
    KEY, CourseKey.from_string(KEY), f"{KEY}+branch@published-branch", f"{KEY}+version@{'a' * 24}",
    CourseKey.from_string(f"{KEY}+branch@draft-branch"),
])
def test_a_course_key_without_branch_or_version(value):
    key = parse_course_key(value)
    assert isinstance(key, CourseKey) and str(key) == KEY


def test_older_keys_are_course_keys():
    assert str(parse_course_key("edX/DemoX/Demo_Course")) == "edX/DemoX/Demo_Course"


@pytest.mark.parametrize("value", ["not a key", "", None, 42, "block-v1:Org+C101+T1+type@html+block@h",
                                   f"course-v1:version@{'a' * 24}"])
def test_anything_else_is_refused_with_one_message(value):
    with pytest.raises(NotACourseKey, match=r"is not a course key \(expected e.g. course-v1:Org\+Course\+Run\)"):
        parse_course_key(value)
    assert issubclass(NotACourseKey, ValueError)  # the commands turn ValueError into a CommandError


@pytest.mark.parametrize(("object_id", "course"), [
    (KEY, KEY),
    ("block-v1:Org+C101+T1+type@html+block@h", KEY),
    ("block-v1:Org+C101+T1+branch@draft-branch+type@html+block@h", KEY),
    (f"{KEY}+branch@draft-branch", KEY),
    ("library-v1:Org+Lib", None),
    ("lib-block-v1:Org+Lib+type@problem+block@p", None),
    ("lb:Org:Lib:problem:p", None),
    ("a tag's object id", None),
])
def test_the_course_of_an_object_id(object_id, course):
    found = course_key_of(object_id)
    assert (str(found) if found is not None else None) == course


def test_the_course_producer_names_a_course_without_its_branch():
    # One subject per course: a publish of the draft branch must not open a second subject.
    assert COURSES.parse_subject(f"{KEY}+branch@published-branch") == KEY
