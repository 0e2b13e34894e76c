"""
Any display name survives publish → outbox (SQLite, MariaDB, PostgreSQL) → ClickHouse,
byte for byte: quotes, tabs, newlines, backslashes, emoji, right-to-left text, NUL, 10,000
characters. Property-based, against the real old server and the current engine.
"""

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from opaque_keys.edx.keys import CourseKey

from clickhouse_outbox.clickhouse.backends.base import qualified_name, quote_string
from clickhouse_outbox.outbox.drain import drain
from clickhouse_outbox.producers.course_structure import take_course_snapshot
from clickhouse_outbox.sources.base import Block, PublishedCourse
from tests.factories import MemorySource

pytestmark = pytest.mark.django_db

AWKWARD = [
    "It's \"quoted\" `back` 'single'",
    "tab\there\nnewline\r\ncrlf",
    "back\\slash \\n not a newline \\u0000",
    "emoji 😀🎓👩🏽‍🏫 and flags 🇫🇷",
    "עברית right-to-left مرحبا \u200f mark",
    "nul\x00inside\x00",
    "x" * 10_000,
    "",
]
# Any Unicode text a Python str can hold and UTF-8 can encode (no lone surrogates).
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)


def course_named(names):
    key = CourseKey.from_string("course-v1:Round+Trip+2026")
    root = str(key.make_usage_key("course", "course"))
    children = [str(key.make_usage_key("html", f"h{i}")) for i in range(len(names))]
    blocks = {root: Block(location=root, block_type="course", display_name=names[0], children=children)}
    for location, name in zip(children, names):
        blocks[location] = Block(location=location, block_type="html", display_name=name)
    return PublishedCourse(course_key=key, root=root, blocks=blocks, display_name=names[0])


def landed_names(backend, dump_id):
    rows = backend.query(
        f"SELECT location, hex(display_name) AS hex FROM {qualified_name(backend.database, 'course_blocks')} "
        f"WHERE dump_id = {quote_string(str(dump_id))} AND location LIKE '%type@html%'"
    )
    return {row["location"]: bytes.fromhex(row["hex"]) for row in rows}


def check_round_trip(backend, names):
    course = course_named(names)
    snapshot = take_course_snapshot(course.course_key, "published", source=MemorySource([course]))
    result = drain()
    assert result.ok, result.errors
    landed = landed_names(backend, snapshot.dump_id)
    expected = {location: course.blocks[location].display_name.encode() for location in course.blocks[course.root].children}
    assert landed == expected
    overview = backend.query(
        f"SELECT hex(display_name) AS hex FROM {qualified_name(backend.database, 'course_overviews')} "
        f"WHERE dump_id = {quote_string(str(snapshot.dump_id))}"
    )
    assert bytes.fromhex(overview[0]["hex"]) == names[0].encode()


def test_awkward_names_round_trip(clickhouse):
    check_round_trip(clickhouse, AWKWARD)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(TEXT, min_size=1, max_size=8))
def test_any_text_round_trips(clickhouse, names):
    check_round_trip(clickhouse, names)
