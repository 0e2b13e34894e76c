"""
Course structure rows: course_overviews, course_blocks and course_relationships.

Shaped exactly as the OARS/Aspects event_sink tables expect (see docs/decisions/0003):
blocks in depth-first pre-order from the course block, then the detached blocks; the
section/subsection/unit counters current at each block's place in that walk; one edge
row per parent → child with the child's 0-based position.
"""

import json

from clickhouse_outbox.clickhouse.tables import COURSE_BLOCKS, COURSE_OVERVIEWS, COURSE_RELATIONSHIPS
from clickhouse_outbox.serializers.encoding import (
    JSONEncoder,
    drf_datetime,
    encode_ascii,
    encode_row,
    encode_string,
    str_datetime,
)

DETACHED_BLOCK_TYPES = frozenset({"about", "course_info", "static_tab"})


class CourseTreeError(ValueError):
    """The course tree handed over by a source is not a tree we can walk."""


#: The end of every block and edge line with its snapshot's values emptied (see outbox.unchanged.digest).
EMPTIED_TAIL = b',"dump_id":"","time_last_dumped":""}\n'


def serialize_course(course, *, dump_id, time_last_dumped, snapshot_time, emptied=None):
    """
    All rows of one snapshot of `course` (a PublishedCourse), as JSONEachRow lines per table.

    `time_last_dumped` is the snapshot's fixed time string; `snapshot_time` (a datetime)
    stands in for `modified` when the source does not know when the course last changed.
    Given a dict as `emptied`, the block and edge lines are also written into it, joined,
    with dump_id and time_last_dumped emptied: the digest's input (`Prepared.emptied`).
    """
    course_key = str(course.course_key)
    blocks, edges = walk(course)
    locations = {}  # each block's location as a JSON string, encoded once for its row and its edges
    return {
        COURSE_OVERVIEWS.name: [overview_row(course, course_key, dump_id, time_last_dumped, snapshot_time)],
        COURSE_BLOCKS.name: block_rows(course, course_key, blocks, dump_id, time_last_dumped, locations, emptied),
        COURSE_RELATIONSHIPS.name: relationship_rows(course_key, edges, dump_id, time_last_dumped, locations, emptied),
    }


def finish(bodies, tail, table, emptied):
    """
    Lines from their bodies (a line without its tail); their emptied form joined into
    `emptied`. Each body is encoded on its own: ASCII lines take the fast path, where one
    joined text holding a non-ASCII name would be encoded character by character.
    """
    encoded = [body.encode() for body in bodies]
    if emptied is not None and encoded:
        emptied[table] = EMPTIED_TAIL.join(encoded) + EMPTIED_TAIL
    tail = tail.encode()
    return [body + tail for body in encoded]


def walk(course):
    """
    The blocks of `course` in dump order, and its edges as (parent, child, position).

    Depth-first pre-order from the root, iteratively (deep courses must not hit the
    recursion limit); a block reachable twice is emitted once, at its first place.
    """
    ordered, edges, seen = [], [], set()
    stack = [course.root]
    while stack:
        location = stack.pop()
        if location in seen:
            continue
        try:
            block = course.blocks[location]
        except KeyError:
            raise CourseTreeError(f"{course.course_key}: the tree refers to {location}, which the course does not have")
        seen.add(location)
        ordered.append(block)
        for position, child in enumerate(block.children):
            edges.append((location, child, position))
        stack.extend(reversed(block.children))
    for block in course.detached:
        if block.location not in seen:
            seen.add(block.location)
            ordered.append(block)
    return ordered, edges


def overview_row(course, course_key, dump_id, time_last_dumped, snapshot_time):
    # Unset values are null, as the successor (platform-plugin-aspects 2.x) writes them from
    # the platform's CourseOverview, whose columns are nullable.
    course_data = {
        "advertised_start": course.advertised_start,
        "announcement": course.announcement,
        "lowest_passing_grade": float(course.lowest_passing_grade or 0.0),
        "invitation_only": bool(course.invitation_only),
        "max_student_enrollments_allowed": course.max_student_enrollments_allowed,
        "effort": course.effort,
        "enable_proctored_exams": bool(course.enable_proctored_exams),
        "entrance_exam_enabled": bool(course.entrance_exam_enabled),
        "external_id": course.external_id,
        "language": course.language or "",
        "tags": list(course.tags),
    }
    return encode_row(
        COURSE_OVERVIEWS.column_names,
        (
            course.course_key.org,
            course_key,
            course.display_name,
            str_datetime(course.start),
            str_datetime(course.end),
            drf_datetime(course.enrollment_start),
            drf_datetime(course.enrollment_end),
            bool(course.self_paced),
            json.dumps(course_data, cls=JSONEncoder),
            drf_datetime(course.created),
            drf_datetime(course.modified or snapshot_time),
            str(dump_id),
            time_last_dumped,
        ),
    )


def block_rows(course, course_key, blocks, dump_id, time_last_dumped, locations=None, emptied=None):
    """
    course_blocks lines; this runs for every block inside the publish, so each line is one
    f-string of pieces encoded once: the xblock_data_json text is written already escaped
    as a JSON string (see `escaped_data`), with its per-type head cached. Each block's
    location, encoded, is kept in `locations` for its edges.
    """
    locations = {} if locations is None else locations
    key = course.course_key
    head = f'{{"org":{encode_string(key.org)},"course_key":{encode_string(course_key)},"location":'
    tail = f',"dump_id":"{dump_id}","time_last_dumped":{encode_string(time_last_dumped)}}}\n'
    data_head = f'{{"course": {encode_ascii(key.course)}, "run": {encode_ascii(key.run)}, "block_type": '
    heads = {}
    section = subsection = unit = 0
    bodies = []
    append = bodies.append
    for order, block in enumerate(blocks, start=1):
        block_type = block.block_type
        detached = block_type in DETACHED_BLOCK_TYPES
        if detached:
            counters = (0, 0, 0)
        else:
            if block_type == "chapter":
                section, subsection, unit = section + 1, 0, 0
            elif block_type == "sequential":
                subsection, unit = subsection + 1, 0
            elif block_type == "vertical":
                unit += 1
            counters = (section, subsection, unit)
        location = locations[block.location] = encode_string(block.location)
        append(
            f"{head}{location},\"display_name\":{encode_string(block.display_name)}"
            f",\"xblock_data_json\":{escaped_data(heads, data_head, block, detached, counters)}"
            f',"order":{order},"edited_on":{encode_string(block.edited_on or "")}'
        )
    return finish(bodies, tail, COURSE_BLOCKS.name, emptied)


def escaped_data(heads, data_head, block, detached, counters):
    """
    `encode_string(xblock_data_json(...))`, built without escaping the whole text: its head
    (up to the counters) is escaped once per block type, and the rest is digits, or
    `json_piece`s escaped on their own.
    """
    graded = 1 if block.graded else 0
    shape = (block.block_type, detached, graded, block.completion_mode or "")
    escaped_head = heads.get(shape)
    if escaped_head is None:
        text = (
            f"{data_head}{encode_ascii(block.block_type)}, \"detached\": {1 if detached else 0}, "
            f"\"graded\": {graded}, \"completion_mode\": {encode_ascii(shape[3])}, \"section\": "
        )
        escaped_head = heads[shape] = encode_string(text)[:-1]  # without its closing quote
    tags = json_piece(list(block.tags)) if block.tags else "[]"
    text = f'{escaped_head}{counters[0]}, \\"subsection\\": {counters[1]}, \\"unit\\": {counters[2]}, \\"tags\\": {tags}'
    if block.block_type == "video":
        start = json_piece(block.fields.get("video_start_time", 0))
        end = json_piece(block.fields.get("video_end_time", 0))
        text += f', \\"video_start_time\\": {start}, \\"video_end_time\\": {end}'
    return text + '}"'


def json_piece(value):
    """`json.dumps(value)` as it stands inside an escaped JSON string."""
    return encode_string(json.dumps(value))[1:-1]


def xblock_data_json(data_head, block, detached, counters):
    """
    The block's xblock_data_json: exactly what json.dumps() gives for the dict of the keys
    the dashboards read (course, run, block_type, detached, graded, completion_mode, section,
    subsection, unit, tags, and a video's start and end), written from a template because
    it runs for every block of every publish.
    """
    text = (
        f"{data_head}{encode_ascii(block.block_type)}, \"detached\": {1 if detached else 0}, "
        f"\"graded\": {1 if block.graded else 0}, \"completion_mode\": {encode_ascii(block.completion_mode or '')}, "
        f"\"section\": {counters[0]}, \"subsection\": {counters[1]}, \"unit\": {counters[2]}, "
        f"\"tags\": {json.dumps(list(block.tags)) if block.tags else '[]'}"
    )
    if block.block_type == "video":
        start = block.fields.get("video_start_time", 0)
        end = block.fields.get("video_end_time", 0)
        text += f", \"video_start_time\": {json.dumps(start)}, \"video_end_time\": {json.dumps(end)}"
    return text + "}"


def relationship_rows(course_key, edges, dump_id, time_last_dumped, locations=None, emptied=None):
    """course_relationships lines; locations are taken encoded from `locations` (block_rows') where there."""
    head = f'{{"course_key":{encode_string(course_key)},"parent_location":'
    middle = ',"child_location":'
    tail = f',"dump_id":"{dump_id}","time_last_dumped":{encode_string(time_last_dumped)}}}\n'
    encoded = {} if locations is None else locations
    bodies = []
    for parent, child, position in edges:
        parent_text = encoded.get(parent) or encoded.setdefault(parent, encode_string(parent))
        child_text = encoded.get(child) or encoded.setdefault(child, encode_string(child))
        bodies.append(f'{head}{parent_text}{middle}{child_text},"order":{position}')
    return finish(bodies, tail, COURSE_RELATIONSHIPS.name, emptied)
