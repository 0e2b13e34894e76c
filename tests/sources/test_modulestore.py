"""
ModulestoreSource against a stand-in modulestore.

edx-platform is not installable here, so the store and its xblocks are plain Python
objects imitating the few attributes the source reads (`location` as a real opaque-keys
BlockUsageLocator on the published branch with a version, `scope_ids.block_type`,
`get_children()`, `display_name_with_default`...), handed in through the constructor.
"""

import contextlib
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from opaque_keys.edx.keys import CourseKey

from clickhouse_outbox.sources.base import CourseNotFound, CourseSourceError
from clickhouse_outbox.sources.modulestore import ModulestoreSource

KEY = CourseKey.from_string("course-v1:Org+MS101+2026")
BRANCHED = KEY.for_branch("published-branch").for_version("0123456789abcdef01234567")
PUBLISHED = "rev-opt-published-only"
DETACHED_TYPES = frozenset({"about", "course_info", "static_tab"})


def loc(block_type, block_id):
    return f"block-v1:Org+MS101+2026+type@{block_type}+block@{block_id}"


class StandInBlock:
    """What the source reads of an XBlock."""

    def __init__(self, block_type, block_id, display_name=None, children=(), course_key=BRANCHED, **fields):
        self.location = course_key.make_usage_key(block_type, block_id)
        self.scope_ids = SimpleNamespace(block_type=block_type, usage_id=self.location)
        self.display_name = display_name
        self.children = list(children)
        self.has_children = bool(children) or block_type in {"course", "chapter", "sequential", "vertical"}
        if block_type == "course":
            self.id = self.location.course_key  # CourseBlock.id
        for name, value in fields.items():
            setattr(self, name, value)

    @property
    def display_name_with_default(self):
        return self.display_name if self.display_name is not None else self.location.block_id.replace("_", " ")

    def get_children(self):
        return list(self.children)


class StandInStore:
    """get_course / get_items / get_courses / bulk_operations, recording how it was asked."""

    def __init__(self, courses=(), detached=()):
        self.courses = {course.location.course_key.for_branch(None): course for course in courses}
        self.detached = list(detached)
        self.calls = []

    def get_course(self, course_key, depth=0, revision=None):
        self.calls.append(("get_course", course_key, depth, revision))
        return self.courses.get(course_key)

    def get_items(self, course_key, qualifiers=None, revision=None):
        self.calls.append(("get_items", course_key, qualifiers, revision))
        return [b for b in self.detached if b.scope_ids.block_type == qualifiers["category"]]

    def get_courses(self):
        return list(self.courses.values())

    @contextlib.contextmanager
    def bulk_operations(self, course_key):
        self.calls.append(("bulk_operations", course_key))
        yield


def sample_course():
    video = StandInBlock("video", "intro_video", "Intro", start_time=timedelta(seconds=5),
                         end_time=timedelta(minutes=1, seconds=30), completion_mode="completable")
    plain_video = StandInBlock("video", "plain_video", "Plain", completion_mode="completable")
    html = StandInBlock("html", "welcome", "Welcome", completion_mode="completable",
                        edited_on=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    problem = StandInBlock("problem", "q1", "Q1", graded=True, completion_mode="completable")
    discussion = StandInBlock("discussion", "talk", "Talk", completion_mode="excluded")
    unit1 = StandInBlock("vertical", "unit1", "Unit 1", [html, video], completion_mode="aggregator")
    unit2 = StandInBlock("vertical", "unit_two", None, [problem, discussion], graded=True,
                         completion_mode="aggregator")
    seq = StandInBlock("sequential", "seq", "Seq", [unit1, unit2], completion_mode="aggregator")
    chapter1 = StandInBlock("chapter", "ch1", "Chapter 1", [seq], completion_mode="aggregator")
    chapter2 = StandInBlock("chapter", "ch2", "Évaluation", [StandInBlock("sequential", "empty", "Empty")],
                            completion_mode="aggregator")
    unit3 = StandInBlock("vertical", "unit3", "Unit 3", [plain_video], completion_mode="aggregator")
    chapter2.children[0].children.append(unit3)
    return StandInBlock(
        "course", "course", "Stand-in Course", [chapter1, chapter2], completion_mode="aggregator",
        start=datetime(2026, 1, 15, tzinfo=UTC), end=datetime(2026, 6, 30),  # naive: read as UTC
        enrollment_start=None, enrollment_end=datetime(2026, 2, 1, tzinfo=UTC),
        self_paced=True, advertised_start="Spring", announcement=None, lowest_passing_grade=0.65,
        invitation_only=True, max_student_enrollments_allowed=100, enable_proctored_exams=True,
        entrance_exam_enabled=False, language="fr",
        edited_on=datetime(2026, 1, 1, tzinfo=UTC), subtree_edited_on=datetime(2026, 1, 10, tzinfo=UTC),
    )


def detached_blocks():
    # Deliberately out of order: the source sorts them.
    return [
        StandInBlock("static_tab", "syllabus", "Syllabus"),
        StandInBlock("course_info", "updates", None),
        StandInBlock("about", "short_description", "overview", data="Short"),
        StandInBlock("about", "effort", "overview", data="  3 hours  \n"),
        StandInBlock("html", "not_detached", "Not detached"),
    ]


TAGS = {loc("problem", "q1"): [3, 7], str(KEY): [1, 2]}


@pytest.fixture
def store():
    return StandInStore([sample_course()], detached_blocks())


CREATED = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_created_is_none_outside_the_platform():
    from clickhouse_outbox.sources.modulestore import course_overview_created

    assert course_overview_created(KEY) is None  # no CourseOverview model here (edx-platform is not installed)


@pytest.fixture
def source(store):
    return ModulestoreSource(store=store, detached_types=DETACHED_TYPES, revision=PUBLISHED,
                             get_tags=lambda key: TAGS.get(str(key), []),
                             get_created=lambda key: CREATED if str(key) == str(KEY) else None)


def test_reads_the_published_revision_in_one_bulk_operation(source, store):
    source.get_course(KEY)
    assert store.calls[0] == ("bulk_operations", KEY)
    assert store.calls[1] == ("get_course", KEY, None, PUBLISHED)
    assert {call[3] for call in store.calls if call[0] == "get_items"} == {PUBLISHED}


def test_tree_is_depth_first_preorder_without_branch_or_version(source):
    course = source.get_course(KEY)
    assert course.root == loc("course", "course")
    assert list(course.blocks) == [
        loc("course", "course"), loc("chapter", "ch1"), loc("sequential", "seq"), loc("vertical", "unit1"),
        loc("html", "welcome"), loc("video", "intro_video"), loc("vertical", "unit_two"), loc("problem", "q1"),
        loc("discussion", "talk"), loc("chapter", "ch2"), loc("sequential", "empty"), loc("vertical", "unit3"),
        loc("video", "plain_video"),
    ]
    assert course.blocks[loc("sequential", "seq")].children == [loc("vertical", "unit1"), loc("vertical", "unit_two")]
    assert course.blocks[loc("course", "course")].children == [loc("chapter", "ch1"), loc("chapter", "ch2")]


def test_block_fields(source):
    blocks = source.get_course(KEY).blocks
    unit2 = blocks[loc("vertical", "unit_two")]
    assert (unit2.display_name, unit2.graded, unit2.completion_mode) == ("unit two", True, "aggregator")
    assert blocks[loc("problem", "q1")].tags == [3, 7]
    assert blocks[loc("html", "welcome")].tags == []
    assert blocks[loc("html", "welcome")].edited_on == "2026-01-02 03:04:05+00:00"
    assert blocks[loc("html", "welcome")].graded is False
    assert blocks[loc("vertical", "unit1")].edited_on == ""
    assert blocks[loc("discussion", "talk")].completion_mode == "excluded"
    assert blocks[loc("chapter", "ch2")].display_name == "Évaluation"
    assert blocks[loc("video", "intro_video")].fields == {"video_start_time": 5.0, "video_end_time": 90.0}
    assert blocks[loc("video", "plain_video")].fields == {"video_start_time": 0.0, "video_end_time": 0.0}


def test_detached_blocks_sorted_by_type_then_location(source):
    course = source.get_course(KEY)
    assert [b.location for b in course.detached] == [
        loc("about", "effort"), loc("about", "short_description"), loc("course_info", "updates"),
        loc("static_tab", "syllabus"),
    ]
    assert course.detached[2].display_name == "updates"
    assert all(b.children == [] for b in course.detached)


def test_course_metadata(source):
    course = source.get_course(KEY)
    assert course.course_key == KEY
    assert course.display_name == "Stand-in Course"
    assert course.start == datetime(2026, 1, 15, tzinfo=UTC)
    assert course.end == datetime(2026, 6, 30, tzinfo=UTC)
    assert course.enrollment_start is None
    assert course.enrollment_end == datetime(2026, 2, 1, tzinfo=UTC)
    assert course.self_paced is True
    assert course.advertised_start == "Spring"
    assert course.announcement is None
    assert course.lowest_passing_grade == 0.65
    assert course.invitation_only is True
    assert course.max_student_enrollments_allowed == 100
    assert course.effort == "3 hours"
    assert course.enable_proctored_exams is True
    assert course.entrance_exam_enabled is False
    assert course.language == "fr"
    assert course.tags == [1, 2]
    assert course.created == CREATED  # the platform's CourseOverview.created, as the peers send it
    assert course.modified == datetime(2026, 1, 10, tzinfo=UTC)  # subtree_edited_on wins over edited_on


def test_modified_falls_back_to_edited_on():
    course_block = sample_course()
    course_block.subtree_edited_on = None
    source = ModulestoreSource(store=StandInStore([course_block]), detached_types=DETACHED_TYPES, revision=PUBLISHED,
                               get_tags=lambda key: [])
    assert source.get_course(KEY).modified == datetime(2026, 1, 1, tzinfo=UTC)


def test_unset_advertised_start_and_effort_are_none():
    """As in the platform's CourseOverview (nullable columns), which the successor serializes."""
    course_block = sample_course()
    course_block.advertised_start = None
    source = ModulestoreSource(store=StandInStore([course_block]), detached_types=DETACHED_TYPES, revision=PUBLISHED,
                               get_tags=lambda key: [])  # no about/effort block
    course = source.get_course(KEY)
    assert (course.advertised_start, course.announcement, course.effort, course.external_id) == (None,) * 4


def test_keys_as_strings_and_with_a_branch(source):
    assert source.get_course(str(KEY)).course_key == KEY
    assert source.get_course(str(BRANCHED)).course_key == KEY


def test_unknown_course(source):
    with pytest.raises(CourseNotFound, match="course-v1:Org\\+MS101\\+nope"):
        source.get_course("course-v1:Org+MS101+nope")
    with pytest.raises(CourseNotFound):
        source.get_course("not a key")


def test_item_not_found_from_the_store_is_course_not_found(store, source):
    class ItemNotFoundError(Exception):  # the name xmodule.modulestore.exceptions uses
        pass

    def get_course(*args, **kwargs):
        raise ItemNotFoundError("gone")

    store.get_course = get_course
    with pytest.raises(CourseNotFound):
        source.get_course(KEY)


def test_other_store_errors_are_course_source_errors_naming_the_course(store, source):
    def get_items(*args, **kwargs):
        raise ConnectionError("mongo is down")

    store.get_items = get_items
    with pytest.raises(CourseSourceError, match="course-v1:Org\\+MS101\\+2026.*mongo is down") as caught:
        source.get_course(KEY)
    assert not isinstance(caught.value, CourseNotFound)
    assert isinstance(caught.value.__cause__, ConnectionError)


def test_a_cycle_in_the_store_is_an_error_not_a_hang():
    course_block = sample_course()
    seq = course_block.children[0].children[0]
    seq.children[0].children.append(seq)
    source = ModulestoreSource(store=StandInStore([course_block]), detached_types=DETACHED_TYPES, revision=PUBLISHED,
                               get_tags=lambda key: [])
    with pytest.raises(CourseSourceError, match="reached twice"):
        source.get_course(KEY)


def test_course_keys_sorted_without_branch():
    other = StandInBlock("course", "course", "A", course_key=CourseKey.from_string("course-v1:Aaa+B+C").for_branch(
        "published-branch"))
    source = ModulestoreSource(store=StandInStore([sample_course(), other]))
    assert source.course_keys() == [CourseKey.from_string("course-v1:Aaa+B+C"), KEY]


def test_course_summaries_are_preferred():
    store = StandInStore([sample_course()])
    store.get_course_summaries = lambda: [SimpleNamespace(id=KEY.for_branch("draft-branch"))]
    store.get_courses = None  # would fail if called
    assert ModulestoreSource(store=store).course_keys() == [KEY]
