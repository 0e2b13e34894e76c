"""The sample course shipped in the package, read as the OLX source reads it."""

from datetime import UTC, datetime

import pytest
from opaque_keys.edx.keys import CourseKey

from clickhouse_outbox.sources.olx import SAMPLE_COURSE_DIR, read_olx_export
from tests.sources.conftest import preorder

KEY = "course-v1:OpenedX+DemoX+2026_T1"
PREFIX = "block-v1:OpenedX+DemoX+2026_T1"

TREE = [
    ("course", "course"),
    ("chapter", "intro"),
    ("sequential", "intro_overview"),
    ("vertical", "intro_welcome"),
    ("html", "welcome_text"),
    ("video", "welcome_video"),
    ("vertical", "intro_how_it_works"),
    ("html", "how_it_works"),
    ("discussion", "intro_discussion"),
    ("sequential", "intro_getting_started"),
    ("vertical", "getting_started_unit"),
    ("html", "platform_tour"),
    ("problem", "precourse_survey"),
    ("chapter", "week1"),
    ("sequential", "week1_lessons"),
    ("vertical", "week1_lesson1"),
    ("html", "lesson1_reading"),
    ("video", "lesson1_video"),
    ("problem", "lesson1_check"),
    ("vertical", "week1_lesson2"),
    ("html", "lesson2_notes"),
    ("html", "lesson2_summary"),
    ("discussion", "lesson2_discussion"),
    ("sequential", "week1_homework"),
    ("vertical", "week1_hw_part1"),
    ("html", "hw1_instructions"),
    ("problem", "hw1_q1"),
    ("problem", "hw1_q2"),
    ("vertical", "week1_hw_part2"),
    ("problem", "hw1_q3"),
    ("html", "hw1_hint"),
    ("chapter", "evaluation"),
    ("sequential", "midterm"),
    ("vertical", "midterm_part_a"),
    ("problem", "midterm_q1"),
    ("problem", "midterm_q2"),
    ("problem", "midterm_q3"),
    ("vertical", "midterm_part_b"),
    ("problem", "midterm_q4"),
    ("problem", "midterm_q5"),
    ("sequential", "wrap_up"),
    ("vertical", "wrap_up_unit"),
    ("html", "farewell"),
    ("video", "farewell_video"),
    ("problem", "course_survey"),
    ("html", "certificate_info"),
]

DETACHED = [
    ("about", "effort", "overview"),
    ("about", "overview", "overview"),
    ("about", "short_description", "overview"),
    ("course_info", "handouts", "Text"),
    ("course_info", "updates", "Text"),
    ("static_tab", "syllabus", "Syllabus"),
]

GRADED = {
    "week1_homework", "week1_hw_part1", "hw1_instructions", "hw1_q1", "hw1_q2", "week1_hw_part2", "hw1_q3",
    "hw1_hint", "midterm", "midterm_part_a", "midterm_q1", "midterm_q2", "midterm_q3", "midterm_part_b",
    "midterm_q4", "midterm_q5",
}


@pytest.fixture(scope="module")
def course():
    return read_olx_export(SAMPLE_COURSE_DIR)


def block(course, block_type, block_id):
    return course.blocks[f"{PREFIX}+type@{block_type}+block@{block_id}"]


def test_tree_is_course_first_then_depth_first_preorder(course):
    assert course.root == f"{PREFIX}+type@course+block@course"
    assert preorder(course) == TREE
    # Every block is in the tree, once, and `blocks` itself is in walk order.
    assert list(course.blocks) == [f"{PREFIX}+type@{t}+block@{i}" for t, i in TREE]


def test_counts(course):
    types = [b.block_type for b in course.blocks.values()]
    assert len(course.blocks) == 46
    assert sum(len(b.children) for b in course.blocks.values()) == 45
    assert (types.count("chapter"), types.count("sequential"), types.count("vertical")) == (3, 6, 10)
    assert len(course.detached) == 6


def test_locations_match_opaque_keys(course):
    key = CourseKey.from_string(KEY)
    for b in list(course.blocks.values()) + course.detached:
        block_id = b.location.rsplit("@", 1)[1]
        assert b.location == str(key.make_usage_key(b.block_type, block_id))


def test_detached_blocks_follow_in_order(course):
    assert [(b.block_type, b.location.rsplit("@", 1)[1], b.display_name) for b in course.detached] == DETACHED
    assert all(b.children == [] and not b.graded for b in course.detached)


def test_drafts_and_orphans_are_not_published(course):
    ids = {b.location.rsplit("@", 1)[1] for b in list(course.blocks.values()) + course.detached}
    assert (SAMPLE_COURSE_DIR / "drafts/vertical/draft_unit.xml").exists()
    assert (SAMPLE_COURSE_DIR / "html/orphan_note.xml").exists()
    assert not ids & {"draft_unit", "draft_note", "orphan_note"}


def test_policy_overrides_the_xml(course):
    homework = block(course, "sequential", "week1_homework")
    assert homework.display_name == "Homework 1"  # the file says "Homework"
    assert homework.graded is True  # only the policy says so


def test_graded_is_inherited_from_the_nearest_ancestor(course):
    graded = {b.location.rsplit("@", 1)[1] for b in course.blocks.values() if b.graded}
    assert graded == GRADED


def test_display_names(course):
    assert block(course, "chapter", "evaluation").display_name == "Évaluation — partie 1"
    assert block(course, "vertical", "week1_lesson1").display_name == 'Lesson 1: "Hello, World"'
    assert block(course, "vertical", "week1_lesson2").display_name == "Lesson 2: The Learner's Notebook"
    assert block(course, "problem", "midterm_q5").display_name == "Question B2 — l'énoncé"
    # No display_name: a vertical falls back to its url_name, an html block to its field default.
    assert block(course, "vertical", "getting_started_unit").display_name == "getting started unit"
    assert block(course, "html", "lesson2_summary").display_name == "Text"


def test_video_times(course):
    assert block(course, "video", "welcome_video").fields == {"video_start_time": 5.0, "video_end_time": 90.0}
    assert block(course, "video", "farewell_video").fields == {"video_start_time": 10.0, "video_end_time": 0.0}
    assert block(course, "video", "lesson1_video").fields == {"video_start_time": 0.0, "video_end_time": 0.0}
    assert block(course, "html", "farewell").fields == {}


def test_completion_modes(course):
    modes = {b.block_type: b.completion_mode for b in course.blocks.values()}
    assert modes == {
        "course": "aggregator", "chapter": "aggregator", "sequential": "aggregator", "vertical": "aggregator",
        "html": "completable", "problem": "completable", "video": "completable", "discussion": "excluded",
    }
    assert {b.edited_on for b in course.blocks.values()} == {""}


def test_course_metadata(course):
    assert str(course.course_key) == KEY
    assert course.display_name == "Open edX Demo Course"
    assert course.start == datetime(2026, 1, 15, tzinfo=UTC)
    assert course.end == datetime(2026, 6, 30, 23, 59, tzinfo=UTC)
    assert course.enrollment_start == datetime(2025, 12, 1, tzinfo=UTC)
    assert course.enrollment_end == datetime(2026, 2, 1, tzinfo=UTC)
    assert course.announcement == datetime(2025, 11, 15, tzinfo=UTC)
    assert course.advertised_start == "Mid-January 2026"
    assert course.self_paced is False
    assert course.invitation_only is False
    assert course.max_student_enrollments_allowed == 500
    assert course.effort == "2:00"
    assert course.enable_proctored_exams is False
    assert course.entrance_exam_enabled is False
    assert course.language == "en"
    assert course.lowest_passing_grade == 0.6
    assert (course.created, course.modified, course.tags, course.external_id) == (None, None, [], None)
