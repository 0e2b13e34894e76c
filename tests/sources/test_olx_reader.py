"""The OLX reader's rules (pointers, inline blocks, policies, values) and how a broken export fails."""

import hashlib
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from clickhouse_outbox.sources.base import CourseSourceError
from clickhouse_outbox.sources.olx import OlxError, read_olx_export
from tests.sources.conftest import loc, preorder

# -- tree rules ----------------------------------------------------------------------------

def test_pointer_and_inline_children(make_export):
    course = read_olx_export(make_export({
        "chapter/ch.xml": '<chapter><sequential url_name="seq"/></chapter>',
        "sequential/seq.xml": (
            '<sequential display_name="S">'
            '<vertical url_name="v_inline" display_name="Inline unit">'
            '  <html url_name="h_pointer"/>'
            '  <problem url_name="p_inline" display_name="P"><choiceresponse/></problem>'
            '</vertical>'
            '</sequential>'
        ),
        "html/h_pointer.xml": '<html filename="h_pointer" display_name="H"/>',
    }))
    assert preorder(course) == [
        ("course", "course"), ("chapter", "ch"), ("sequential", "seq"), ("vertical", "v_inline"),
        ("html", "h_pointer"), ("problem", "p_inline"),
    ]
    assert course.blocks[loc("vertical", "v_inline")].display_name == "Inline unit"
    assert course.blocks[loc("html", "h_pointer")].display_name == "H"


def test_leaf_content_is_not_blocks(make_export):
    # A problem's inner XML (and an html block's) is content, even when it looks like a pointer.
    course = read_olx_export(make_export({
        "chapter/ch.xml": '<chapter><problem url_name="p"/></chapter>',
        "problem/p.xml": '<problem><html url_name="not_a_block"/><vertical url_name="nor_this"/></problem>',
    }))
    assert preorder(course)[-1] == ("problem", "p")
    assert course.blocks[loc("problem", "p")].children == []
    assert len(course.blocks) == 3


def test_colon_in_url_name_is_a_subfolder(make_export):
    course = read_olx_export(make_export({
        "chapter/ch.xml": '<chapter><html url_name="secret:lab"/></chapter>',
        "html/secret/lab.xml": '<html display_name="Lab"/>',
    }))
    assert course.blocks[loc("html", "secret:lab")].display_name == "Lab"


def test_inline_block_without_url_name_is_named_like_edx_platform_names_it(make_export):
    anonymous = "<html>Hello</html>"
    named = '<problem display_name="Week 1: Quiz"/>'
    twin = '<problem display_name="Week 1: Quiz" weight="2"/>'
    chapter = f"<chapter>{anonymous}\n  {anonymous}{named}{twin}</chapter>"
    course = read_olx_export(make_export({"chapter/ch.xml": chapter}))

    def digest(xml):
        return hashlib.sha1(ET.canonicalize(xml).encode()).hexdigest()[:12]

    assert course.blocks[loc("chapter", "ch")].children == [
        loc("html", f"html_{digest(anonymous)}"),
        loc("html", f"html_{digest(anonymous)}_2"),  # identical twins stay apart
        loc("problem", "Week_1_Quiz"),  # the display_name made id-safe
        loc("problem", f"problem_Week_1_Quiz_{digest(twin)}"),  # that name is taken
    ]
    # The same content gives the same ids on every read.
    assert read_olx_export(make_export({"chapter/ch.xml": chapter})).blocks.keys() == course.blocks.keys()


def test_course_written_inline_in_course_xml(make_export):
    course = read_olx_export(make_export({
        "course.xml": (
            '<course url_name="T1" org="Org" course="C101" display_name="Inline">'
            '<chapter url_name="ch"/><chapter display_name="Two"><sequential url_name="s"/></chapter></course>'
        ),
        "course/T1.xml": None,
        "sequential/s.xml": "<sequential/>",
    }))
    assert course.display_name == "Inline"
    assert preorder(course) == [("course", "course"), ("chapter", "ch"), ("chapter", "Two"), ("sequential", "s")]


def test_older_slug_spelling(make_export):
    course = read_olx_export(make_export({
        "course.xml": '<course slug="T1" org="Org" course="C101" name="Old"><chapter slug="legacy"/></course>',
        "course/T1.xml": None,
    }))
    assert str(course.course_key) == "course-v1:Org+C101+T1"
    assert preorder(course) == [("course", "course"), ("chapter", "legacy")]


def test_course_settings_elements_are_not_blocks(make_export):
    course = read_olx_export(make_export({"course/T1.xml": (
        '<course><textbook title="Book" book_url="https://example.com/"/>'
        '<chapter url_name="ch"/><wiki slug="Org.C101.T1"/></course>'
    )}))
    assert course.blocks[course.root].children == [loc("chapter", "ch")]
    assert len(course.blocks) == 2


def test_other_container_types_have_children(make_export):
    course = read_olx_export(make_export({
        "chapter/ch.xml": '<chapter><videosequence url_name="vs"/></chapter>',
        "videosequence/vs.xml": (
            '<sequential><split_test url_name="ab" user_partition_id="0">'
            '<vertical url_name="a"><html url_name="ha" display_name="A"/></vertical>'
            '</split_test><library_content url_name="lib">'
            '<problem url_name="lp" display_name="LP"/></library_content></sequential>'
        ),
    }))
    assert preorder(course)[2:] == [
        ("videosequence", "vs"), ("split_test", "ab"), ("vertical", "a"), ("html", "ha"),
        ("library_content", "lib"), ("problem", "lp"),
    ]
    assert course.blocks[loc("split_test", "ab")].completion_mode == "aggregator"


def test_graded_inherits_from_nearest_ancestor_that_sets_it(make_export):
    course = read_olx_export(make_export({
        "chapter/ch.xml": '<chapter graded="true"><sequential url_name="s1"/><sequential url_name="s2"/></chapter>',
        "sequential/s1.xml": '<sequential><vertical url_name="v1"><html url_name="h1" display_name="x"/></vertical>'
                             '</sequential>',
        "sequential/s2.xml": '<sequential graded="False"><vertical url_name="v2"/></sequential>',  # not JSON
        "vertical/v2.xml": '<vertical><problem url_name="p2" graded="True" display_name="p"/>'
                           '<problem url_name="p3" display_name="q"/></vertical>',
    }))
    graded = {b.location.rsplit("@", 1)[1]: b.graded for b in course.blocks.values()}
    assert graded == {
        "course": False, "ch": True, "s1": True, "v1": True, "h1": True,
        "s2": False, "v2": False, "p2": True, "p3": False,
    }


def test_policy_overrides_attributes_by_type_and_url_name(make_export):
    course = read_olx_export(make_export({
        "chapter/ch.xml": '<chapter display_name="From XML"><sequential url_name="s"/></chapter>',
        "sequential/s.xml": '<sequential display_name="Seq" graded="false"/>',
        "policies/T1/policy.json": (
            '{"course/T1": {"display_name": "From policy"},'
            ' "chapter/ch": {"display_name": "Chapter from policy"},'
            ' "sequential/s": {"graded": true, "format": "Homework"},'
            ' "vertical/s": {"display_name": "wrong type: ignored"}}'
        ),
    }))
    assert course.display_name == "From policy"
    assert course.blocks[loc("chapter", "ch")].display_name == "Chapter from policy"
    assert course.blocks[loc("sequential", "s")].graded is True
    assert course.blocks[loc("sequential", "s")].display_name == "Seq"


def test_older_policy_file_name_is_read(make_export):
    course = read_olx_export(make_export({"policies/T1.json": '{"course/T1": {"display_name": "Old layout"}}'}))
    assert course.display_name == "Old layout"


def test_attribute_values_are_read_like_edx_platform(make_export):
    course = read_olx_export(make_export({"course/T1.xml": (
        '<course display_name="&quot;Quoted&quot;" start="&quot;2015-07-17T12:00:00+02:00&quot;" '
        'end="2016-01-01T00:00" self_paced="true" invitation_only="True" '
        'max_student_enrollments_allowed="25" language="fr" advertised_start="2015">'
        '<chapter url_name="ch"/></course>'
    )}))
    assert course.display_name == "Quoted"  # a JSON string attribute is unquoted
    assert course.start == datetime(2015, 7, 17, 10, tzinfo=UTC)
    assert course.end == datetime(2016, 1, 1, tzinfo=UTC)  # naive means UTC
    assert course.self_paced is True
    assert course.invitation_only is True
    assert course.max_student_enrollments_allowed == 25
    assert course.language == "fr"
    assert course.advertised_start == "2015"  # a String field keeps the raw text


def test_course_defaults(make_export):
    course = read_olx_export(make_export({"course/T1.xml": '<course><chapter url_name="ch"/></course>'}))
    assert course.display_name == "course"
    assert course.start == datetime(2030, 1, 1, tzinfo=UTC)
    assert (course.end, course.enrollment_start, course.enrollment_end, course.announcement) == (None,) * 4
    assert (course.self_paced, course.invitation_only, course.enable_proctored_exams,
            course.entrance_exam_enabled) == (False,) * 4
    assert (course.advertised_start, course.effort, course.external_id) == (None, None, None)  # unset, not ""
    assert course.language == ""
    assert course.max_student_enrollments_allowed is None
    assert course.lowest_passing_grade == 0.5
    assert course.detached == []


def test_lowest_passing_grade_is_the_lowest_cutoff(make_export):
    course = read_olx_export(make_export({"policies/T1/grading_policy.json": '{"GRADE_CUTOFFS": {"A": 0.8, "C": 0.55}}'}))
    assert course.lowest_passing_grade == 0.55


def test_video_times(make_export):
    course = read_olx_export(make_export({
        "chapter/ch.xml": (
            '<chapter><video url_name="a" start_time="01:02:03" end_time="01:10:00"/>'
            '<video url_name="b" start_time="12.5" end_time=""/></chapter>'
        ),
    }))
    assert course.blocks[loc("video", "a")].fields == {"video_start_time": 3723.0, "video_end_time": 4200.0}
    assert course.blocks[loc("video", "b")].fields == {"video_start_time": 12.5, "video_end_time": 0.0}


def test_static_tabs_follow_the_tabs_policy_then_unlisted_files(make_export):
    course = read_olx_export(make_export({
        "tabs/b_tab.html": "<p>b</p>",
        "tabs/a_tab.html": "<p>a</p>",
        "tabs/unlisted.html": "<p>?</p>",
        "info/updates.html": "<ol/>",
        "info/updates.items.json": "[]",
        "about/.DS_Store": "junk",
        "about/overview.html~": "editor backup",
        "policies/T1/policy.json": (
            '{"course/T1": {"tabs": [{"type": "courseware", "name": "Course"},'
            ' {"type": "static_tab", "name": "Bee", "url_slug": "b_tab"},'
            ' {"type": "static_tab", "name": "Gone", "url_slug": "no_file"},'
            ' {"type": "static_tab", "name": "Ay", "url_slug": "a_tab"}]}}'
        ),
    }))
    assert [(b.block_type, b.location.rsplit("@", 1)[1], b.display_name) for b in course.detached] == [
        ("course_info", "updates", "Text"),
        ("static_tab", "b_tab", "Bee"),
        ("static_tab", "a_tab", "Ay"),
        ("static_tab", "unlisted", ""),
    ]


# -- broken exports ------------------------------------------------------------------------

def assert_fails(path, *fragments):
    with pytest.raises(OlxError) as caught:
        read_olx_export(path)
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert isinstance(caught.value, CourseSourceError)
    return str(caught.value)


def test_malformed_xml_names_the_file_and_line(make_export):
    root = make_export({"chapter/ch.xml": '<chapter>\n  <sequential url_name="s">\n</chapter>'})
    assert_fails(root, str(root / "chapter/ch.xml"), "malformed XML", "line 3")


def test_pointer_to_a_missing_file(make_export):
    root = make_export({"chapter/ch.xml": '<chapter><sequential url_name="gone"/></chapter>'})
    assert_fails(root, str(root / "sequential/gone.xml"), "missing", f"pointed to by {root / 'chapter/ch.xml'}")


def test_missing_course_block_file(make_export):
    root = make_export({"course/T1.xml": None})
    assert_fails(root, str(root / "course/T1.xml"), "missing")


def test_no_course_xml(make_export):
    root = make_export({"course.xml": None})
    assert_fails(root, str(root / "course.xml"), "missing")


def test_course_xml_without_key_parts(make_export):
    root = make_export({"course.xml": '<course url_name="T1" org="Org"/>'})
    assert_fails(root, str(root / "course.xml"), "needs url_name, org and course")


def test_policy_that_is_not_json(make_export):
    root = make_export({"policies/T1/policy.json": '{"course/T1": {"display_name": "x",}}'})
    assert_fails(root, str(root / "policies/T1/policy.json"), "not valid JSON")


def test_policy_entry_that_is_not_an_object(make_export):
    root = make_export({"policies/T1/policy.json": '{"course/T1": ["x"]}'})
    assert_fails(root, str(root / "policies/T1/policy.json"), "'course/T1'")


def test_grading_policy_that_is_not_json(make_export):
    root = make_export({"policies/T1/grading_policy.json": "GRADE_CUTOFFS: 0.5"})
    assert_fails(root, str(root / "policies/T1/grading_policy.json"), "not valid JSON")


def test_child_cycle(make_export):
    root = make_export({
        "chapter/ch.xml": '<chapter><vertical url_name="a"/></chapter>',
        "vertical/a.xml": '<vertical><vertical url_name="b"/></vertical>',
        "vertical/b.xml": '<vertical><vertical url_name="a"/></vertical>',
    })
    assert_fails(root, str(root / "vertical/b.xml"), "child cycle", "+type@vertical+block@b contains")


def test_block_used_twice(make_export):
    root = make_export({
        "course/T1.xml": '<course><chapter url_name="ch"/><chapter url_name="ch2"/></course>',
        "chapter/ch.xml": '<chapter><html url_name="h"/></chapter>',
        "chapter/ch2.xml": '<chapter><html url_name="h"/></chapter>',
        "html/h.xml": "<html/>",
    })
    assert_fails(root, str(root / "chapter/ch2.xml"), "+type@html+block@h is used twice", str(root / "chapter/ch.xml"))


def test_invalid_url_name(make_export):
    root = make_export({"chapter/ch.xml": '<chapter><html url_name="has space" display_name="x"/></chapter>'})
    assert_fails(root, str(root / "chapter/ch.xml"), "'has space'")


def test_bad_value_in_policy_names_the_policy(make_export):
    root = make_export({"policies/T1/policy.json": '{"course/T1": {"start": "next tuesday"}}'})
    assert_fails(root, str(root / "policies/T1/policy.json"), "bad start")


def test_bad_value_in_xml_names_the_xml_file(make_export):
    root = make_export({"chapter/ch.xml": '<chapter><video url_name="v" start_time="soon"/></chapter>'})
    assert_fails(root, str(root / "chapter/ch.xml"), "bad start_time")


def test_not_an_export_at_all(tmp_path):
    assert_fails(tmp_path / "nowhere", "no such export")
    (tmp_path / "notes.txt").write_text("hello")
    assert_fails(tmp_path / "notes.txt", "not a readable .tar.gz")
