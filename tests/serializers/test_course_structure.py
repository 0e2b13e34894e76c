"""
The course-structure rows against the data contract (../shared/contract/aspects-event-sink.md).
"""

import json
import uuid
from datetime import datetime, timezone

import pytest
from hypothesis import given, strategies as st
from opaque_keys.edx.keys import CourseKey

from clickhouse_outbox.clickhouse.tables import COURSE_BLOCKS, COURSE_OVERVIEWS, COURSE_RELATIONSHIPS
from clickhouse_outbox.serializers.course_structure import (
    CourseTreeError,
    escaped_data,
    serialize_course,
    xblock_data_json,
)
from clickhouse_outbox.serializers.encoding import encode_string
from clickhouse_outbox.sources.base import Block, PublishedCourse
from clickhouse_outbox.sources.olx import SAMPLE_COURSE_DIR, read_olx_export

DUMP_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")
DUMPED = "2026-11-27 10:00:00.000001+00:00"
SNAPSHOT_TIME = datetime(2026, 11, 27, 10, 0, 0, 1, tzinfo=timezone.utc)


def rows(lines):
    return [json.loads(line) for line in lines]


def small_course():
    """course → 2 chapters; chapter 1 → 2 sequentials → verticals → leaves; plus detached blocks."""
    key = CourseKey.from_string("course-v1:Org+Num+Run")

    def loc(block_type, block_id):
        return str(key.make_usage_key(block_type, block_id))

    tree = {
        loc("course", "course"): ("course", "Course", [loc("chapter", "c1"), loc("chapter", "c2")]),
        loc("chapter", "c1"): ("chapter", "Chapter 1", [loc("sequential", "s1"), loc("sequential", "s2")]),
        loc("sequential", "s1"): ("sequential", "Seq 1", [loc("vertical", "v1"), loc("vertical", "v2")]),
        loc("vertical", "v1"): ("vertical", "Unit 1", [loc("html", "h1"), loc("video", "vid")]),
        loc("html", "h1"): ("html", "Html 1", []),
        loc("video", "vid"): ("video", "Video", []),
        loc("vertical", "v2"): ("vertical", "Unit 2", [loc("problem", "p1")]),
        loc("problem", "p1"): ("problem", "Problem 1", []),
        loc("sequential", "s2"): ("sequential", "Seq 2", [loc("vertical", "v3")]),
        loc("vertical", "v3"): ("vertical", "Unit 3", []),
        loc("chapter", "c2"): ("chapter", "Chapter 2", [loc("sequential", "s3")]),
        loc("sequential", "s3"): ("sequential", "Seq 3", []),
    }
    blocks = {
        location: Block(location=location, block_type=t, display_name=name, children=children,
                        graded=(location == loc("sequential", "s2")),
                        fields={"video_start_time": 5, "video_end_time": 65} if t == "video" else {})
        for location, (t, name, children) in tree.items()
    }
    detached = [
        Block(location=loc("about", "overview"), block_type="about", display_name="overview"),
        Block(location=loc("static_tab", "syllabus"), block_type="static_tab", display_name="Syllabus"),
    ]
    return PublishedCourse(
        course_key=key, root=loc("course", "course"), blocks=blocks, detached=detached,
        display_name="Course", start=datetime(2030, 1, 1, tzinfo=timezone.utc), self_paced=True,
        language="fr", lowest_passing_grade=0.6,
    ), loc


def test_blocks_in_depth_first_preorder_then_detached_with_counters():
    course, loc = small_course()
    out = serialize_course(course, dump_id=DUMP_ID, time_last_dumped=DUMPED, snapshot_time=SNAPSHOT_TIME)
    blocks = rows(out[COURSE_BLOCKS.name])
    got = [(b["location"], b["order"], json.loads(b["xblock_data_json"])) for b in blocks]
    expected = [
        (loc("course", "course"), (0, 0, 0)),
        (loc("chapter", "c1"), (1, 0, 0)),
        (loc("sequential", "s1"), (1, 1, 0)),
        (loc("vertical", "v1"), (1, 1, 1)),
        (loc("html", "h1"), (1, 1, 1)),
        (loc("video", "vid"), (1, 1, 1)),
        (loc("vertical", "v2"), (1, 1, 2)),
        (loc("problem", "p1"), (1, 1, 2)),
        (loc("sequential", "s2"), (1, 2, 0)),
        (loc("vertical", "v3"), (1, 2, 1)),
        (loc("chapter", "c2"), (2, 0, 0)),
        (loc("sequential", "s3"), (2, 1, 0)),
        (loc("about", "overview"), (0, 0, 0)),
        (loc("static_tab", "syllabus"), (0, 0, 0)),
    ]
    assert [(location, order) for location, order, _ in got] == [(e[0], i) for i, e in enumerate(expected, 1)]
    assert [(d["section"], d["subsection"], d["unit"]) for _, _, d in got] == [e[1] for e in expected]
    assert [d["detached"] for _, _, d in got] == [0] * 12 + [1, 1]
    assert [d["graded"] for _, _, d in got] == [1 if e[0] == loc("sequential", "s2") else 0 for e in expected]
    video = got[5][2]
    assert (video["video_start_time"], video["video_end_time"]) == (5, 65)
    assert "video_start_time" not in got[4][2]
    first = got[0][2]
    assert list(first) == ["course", "run", "block_type", "detached", "graded", "completion_mode",
                           "section", "subsection", "unit", "tags"]
    assert (first["course"], first["run"], first["block_type"], first["tags"]) == ("Num", "Run", "course", [])


def test_every_row_has_contract_columns_in_order_and_the_snapshot_ids():
    course, _ = small_course()
    out = serialize_course(course, dump_id=DUMP_ID, time_last_dumped=DUMPED, snapshot_time=SNAPSHOT_TIME)
    for table in (COURSE_OVERVIEWS, COURSE_BLOCKS, COURSE_RELATIONSHIPS):
        for row in rows(out[table.name]):
            assert tuple(row) == table.column_names
            assert row["dump_id"] == str(DUMP_ID)
            assert row["time_last_dumped"] == DUMPED


def test_relationships_are_every_edge_with_zero_based_position():
    course, loc = small_course()
    out = serialize_course(course, dump_id=DUMP_ID, time_last_dumped=DUMPED, snapshot_time=SNAPSHOT_TIME)
    edges = [(r["parent_location"], r["child_location"], r["order"]) for r in rows(out[COURSE_RELATIONSHIPS.name])]
    expected = [
        (parent, child, position)
        for parent, block in course.blocks.items()
        for position, child in enumerate(block.children)
    ]
    assert sorted(edges) == sorted(expected)
    assert len(edges) == 11
    assert edges[0] == (loc("course", "course"), loc("chapter", "c1"), 0)
    assert {r["course_key"] for r in rows(out[COURSE_RELATIONSHIPS.name])} == {"course-v1:Org+Num+Run"}


def test_overview_row():
    course, _ = small_course()
    out = serialize_course(course, dump_id=DUMP_ID, time_last_dumped=DUMPED, snapshot_time=SNAPSHOT_TIME)
    (overview,) = rows(out[COURSE_OVERVIEWS.name])
    assert overview["org"] == "Org"
    assert overview["course_key"] == "course-v1:Org+Num+Run"
    assert overview["self_paced"] is True
    assert overview["course_start"] == "2030-01-01 00:00:00+00:00"
    assert overview["course_end"] == ""
    assert overview["modified"] == "2026-11-27T10:00:00.000001Z"  # no modified from the source: the snapshot time
    data = json.loads(overview["course_data_json"])
    assert set(data) == {"advertised_start", "announcement", "lowest_passing_grade", "invitation_only",
                         "max_student_enrollments_allowed", "effort", "enable_proctored_exams",
                         "entrance_exam_enabled", "external_id", "language", "tags"}
    assert (data["language"], data["lowest_passing_grade"]) == ("fr", 0.6)


def test_unset_course_data_values_are_null_as_the_successor_writes_them():
    """platform-plugin-aspects 2.1.0 dumps the platform's nullable CourseOverview columns: null, not ""."""
    course, _ = small_course()
    out = serialize_course(course, dump_id=DUMP_ID, time_last_dumped=DUMPED, snapshot_time=SNAPSHOT_TIME)
    text = rows(out[COURSE_OVERVIEWS.name])[0]["course_data_json"]
    data = json.loads(text)
    unset = ("advertised_start", "announcement", "effort", "external_id")
    assert {name: data[name] for name in unset} == dict.fromkeys(unset)
    assert '"advertised_start": null, "announcement": null' in text and '"external_id": null' in text
    assert data["max_student_enrollments_allowed"] is None


def test_set_course_data_values_are_written_as_they_are():
    course, _ = small_course()
    course.advertised_start = "Spring 2030"
    course.announcement = datetime(2029, 12, 1, 9, 30, tzinfo=timezone.utc)
    course.effort = "3:00"
    course.external_id = "ext-42"
    out = serialize_course(course, dump_id=DUMP_ID, time_last_dumped=DUMPED, snapshot_time=SNAPSHOT_TIME)
    data = json.loads(rows(out[COURSE_OVERVIEWS.name])[0]["course_data_json"])
    assert (data["advertised_start"], data["announcement"], data["effort"], data["external_id"]) == (
        "Spring 2030", "2029-12-01T09:30:00+00:00", "3:00", "ext-42"
    )


def test_the_same_snapshot_serializes_to_identical_bytes():
    course, _ = small_course()
    first = serialize_course(course, dump_id=DUMP_ID, time_last_dumped=DUMPED, snapshot_time=SNAPSHOT_TIME)
    second = serialize_course(course, dump_id=DUMP_ID, time_last_dumped=DUMPED, snapshot_time=SNAPSHOT_TIME)
    assert first == second


def test_a_tree_pointing_at_a_missing_block_is_an_error_naming_it():
    course, loc = small_course()
    course.blocks[loc("vertical", "v3")].children.append(loc("html", "ghost"))
    with pytest.raises(CourseTreeError, match="type@html\\+block@ghost"):
        serialize_course(course, dump_id=DUMP_ID, time_last_dumped=DUMPED, snapshot_time=SNAPSHOT_TIME)


def test_a_deep_course_does_not_hit_the_recursion_limit():
    key = CourseKey.from_string("course-v1:Org+Deep+Run")
    locations = [str(key.make_usage_key("vertical", f"v{i}")) for i in range(5000)]
    blocks = {loc: Block(location=loc, block_type="vertical", display_name=loc, children=[nxt])
              for loc, nxt in zip(locations, locations[1:])}
    blocks[locations[-1]] = Block(location=locations[-1], block_type="vertical", display_name="last")
    course = PublishedCourse(course_key=key, root=locations[0], blocks=blocks)
    out = serialize_course(course, dump_id=DUMP_ID, time_last_dumped=DUMPED, snapshot_time=SNAPSHOT_TIME)
    assert len(out[COURSE_BLOCKS.name]) == 5000


def test_the_sample_course_serializes_per_contract():
    course = read_olx_export(SAMPLE_COURSE_DIR)
    out = serialize_course(course, dump_id=DUMP_ID, time_last_dumped=DUMPED, snapshot_time=SNAPSHOT_TIME)
    blocks = rows(out[COURSE_BLOCKS.name])
    types = [json.loads(b["xblock_data_json"])["block_type"] for b in blocks]
    assert types[0] == "course"
    tree_count = len(course.blocks)
    assert types[tree_count:] == [b.block_type for b in course.detached]
    assert all(t in {"about", "course_info", "static_tab"} for t in types[tree_count:])
    assert [b["order"] for b in blocks] == list(range(1, len(blocks) + 1))
    assert len(rows(out[COURSE_RELATIONSHIPS.name])) == sum(len(b.children) for b in course.blocks.values())
    assert not any("draft" in b["location"] or "orphan" in b["location"] for b in blocks)


def reference_xblock_data(key, block, detached, counters):
    """The dict the peers build, dumped by json.dumps: what the template must reproduce exactly."""
    data = {
        "course": key.course, "run": key.run, "block_type": block.block_type,
        "detached": 1 if detached else 0, "graded": 1 if block.graded else 0,
        "completion_mode": block.completion_mode or "",
        "section": counters[0], "subsection": counters[1], "unit": counters[2], "tags": list(block.tags),
    }
    if block.block_type == "video":
        data["video_start_time"] = block.fields.get("video_start_time", 0)
        data["video_end_time"] = block.fields.get("video_end_time", 0)
    return json.dumps(data)


@given(
    block_type=st.sampled_from(["html", "video", "chapter", "about", "problem"]) | st.text(max_size=20),
    completion_mode=st.text(max_size=30),
    graded=st.booleans(),
    detached=st.booleans(),
    counters=st.tuples(*[st.integers(0, 10**6)] * 3),
    tags=st.lists(st.integers(0, 10**9) | st.text(max_size=20), max_size=5),
    start=st.integers(0, 10**5) | st.floats(allow_nan=False, allow_infinity=False),
    end=st.integers(0, 10**5) | st.floats(allow_nan=False, allow_infinity=False),
    run=st.sampled_from(["Run", "2026_T1", "R-é"]),
)
def test_xblock_data_json_is_exactly_what_json_dumps_gives(block_type, completion_mode, graded, detached, counters,
                                                           tags, start, end, run):
    key = CourseKey.from_string(f"course-v1:Org+Num+{run.replace('é', 'e')}")
    block = Block(location="x", block_type=block_type, display_name="x", graded=graded,
                  completion_mode=completion_mode, tags=tags,
                  fields={"video_start_time": start, "video_end_time": end})
    data_head = f'{{"course": {json.dumps(key.course)}, "run": {json.dumps(key.run)}, "block_type": '
    assert xblock_data_json(data_head, block, detached, counters) == reference_xblock_data(key, block, detached, counters)



@given(
    block_type=st.sampled_from(["html", "video", "chapter", "about", "problem"]) | st.text(max_size=20),
    completion_mode=st.text(max_size=30),
    graded=st.booleans(),
    detached=st.booleans(),
    counters=st.lists(st.tuples(*[st.integers(0, 10**6)] * 3), min_size=1, max_size=3),
    tags=st.lists(st.integers(0, 10**9) | st.text(max_size=20), max_size=5),
    start=st.integers(0, 10**5) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    end=st.integers(0, 10**5) | st.floats(allow_nan=False, allow_infinity=False),
)
def test_the_escaped_xblock_data_is_exactly_the_encoded_json(block_type, completion_mode, graded, detached, counters,
                                                              tags, start, end):
    """What block_rows writes is encode_string() of the reference text, the cached head reused or not."""
    key = CourseKey.from_string("course-v1:Org+Num+Run")
    block = Block(location="x", block_type=block_type, display_name="x", graded=graded,
                  completion_mode=completion_mode, tags=tags,
                  fields={"video_start_time": start, "video_end_time": end})
    data_head = f'{{"course": {json.dumps(key.course)}, "run": {json.dumps(key.run)}, "block_type": '
    heads = {}
    for each in counters:  # the second and third reuse the head cached by the first
        expected = encode_string(xblock_data_json(data_head, block, detached, each))
        assert escaped_data(heads, data_head, block, detached, each) == expected
