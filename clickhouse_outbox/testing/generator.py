"""
Synthetic courses of a chosen size, for tests and benchmarks.

`write_course_export` writes a valid OLX export the way Studio lays one out (pointer
files, html bodies in .html files, graded sequentials); `generate_published_course`
builds the `PublishedCourse` that reading that export gives, in memory, without disk.

Sizes: `blocks` is the exact number of blocks in the course tree, the course block
included (chapters -> sequentials -> verticals -> html/problem/video leaves, filled in
depth-first order until the count is reached, so the last branch may be short). Two
detached blocks come on top: about/overview and course_info/updates. The same `seed`
gives the same course.
"""

import json
import random
import tarfile
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import quoteattr

from opaque_keys.edx.keys import CourseKey

from clickhouse_outbox.sources.base import Block, PublishedCourse
from clickhouse_outbox.sources.olx.reader import DISPLAY_NAME_DEFAULTS, completion_mode

START = datetime(2026, 1, 1, tzinfo=UTC)
LEAF_TYPES = ("html", "problem", "video")
LEAF_WEIGHTS = (5, 4, 1)
DETACHED = (("about", "overview", "about"), ("course_info", "updates", "info"))


@dataclass
class _Node:
    block_type: str
    block_id: str
    display_name: str
    graded: bool = False
    attrs: dict = field(default_factory=dict)
    children: list = field(default_factory=list)


def _plan(blocks, seed):
    """The course tree: exactly `blocks` nodes, the course included."""
    if blocks < 1:
        raise ValueError("blocks counts the course block, so it must be at least 1")
    rng = random.Random(seed)
    root = _Node("course", "course", "")
    remaining = blocks - 1

    def new(block_type, name, parent, graded=False, attrs=None):
        nonlocal remaining
        node = _Node(block_type, f"{rng.getrandbits(128):032x}", name, graded, attrs or {})
        parent.children.append(node)
        remaining -= 1
        return node

    chapter_n = 0
    while remaining:
        chapter_n += 1
        chapter = new("chapter", f"Section {chapter_n}", root)
        for seq_n in range(1, rng.randint(2, 5) + 1):
            if not remaining:
                break
            graded = rng.random() < 0.35
            attrs = {"graded": "true", "format": "Homework"} if graded else {}
            sequential = new("sequential", f"Subsection {chapter_n}.{seq_n}", chapter, graded, attrs)
            for unit_n in range(1, rng.randint(1, 4) + 1):
                if not remaining:
                    break
                vertical = new("vertical", f"Unit {chapter_n}.{seq_n}.{unit_n}", sequential, graded)
                for leaf_n in range(1, rng.randint(1, 5) + 1):
                    if not remaining:
                        break
                    leaf_type = rng.choices(LEAF_TYPES, LEAF_WEIGHTS)[0]
                    name = f"{leaf_type.title()} {chapter_n}.{seq_n}.{unit_n}.{leaf_n}"
                    attrs = {}
                    if leaf_type == "video":
                        start = rng.randint(0, 60)
                        attrs = {"start_time": _hms(start), "end_time": _hms(start + rng.randint(30, 600))}
                    new(leaf_type, name, vertical, graded, attrs)
    return root


def _hms(seconds):
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _seconds(hms):
    hours, minutes, seconds = (int(part) for part in hms.split(":"))
    return float(hours * 3600 + minutes * 60 + seconds)


def _course_name(course, run):
    return f"Generated Course {course} {run}"


def generate_published_course(blocks=1000, *, org="GenX", course="Gen101", run="R1", seed=0) -> PublishedCourse:
    """The PublishedCourse that `write_course_export` with the same arguments reads back as."""
    course_key = CourseKey.from_string(f"course-v1:{org}+{course}+{run}")
    tree = {}
    stack = [(_plan(blocks, seed), None)]
    while stack:
        node, parent = stack.pop()
        location = str(course_key.make_usage_key(node.block_type, node.block_id))
        fields = {}
        if node.block_type == "video":
            fields = {"video_start_time": _seconds(node.attrs["start_time"]),
                      "video_end_time": _seconds(node.attrs["end_time"])}
        tree[location] = Block(
            location=location,
            block_type=node.block_type,
            display_name=node.display_name or _course_name(course, run),
            graded=node.graded,
            completion_mode=completion_mode(node.block_type),
            fields=fields,
        )
        if parent is not None:
            tree[parent].children.append(location)
        stack.extend((child, location) for child in reversed(node.children))
    detached = [
        Block(
            location=str(course_key.make_usage_key(block_type, block_id)),
            block_type=block_type,
            display_name=DISPLAY_NAME_DEFAULTS[block_type],
            completion_mode=completion_mode(block_type),
        )
        for block_type, block_id, _folder in DETACHED
    ]
    return PublishedCourse(
        course_key=course_key,
        root=str(course_key.make_usage_key("course", "course")),
        blocks=tree,
        detached=detached,
        display_name=_course_name(course, run),
        start=START,
        language="en",
    )


def write_course_export(dest_dir, *, blocks=1000, org="GenX", course="Gen101", run="R1", seed=0,
                        tarball=False) -> Path:
    """
    Write an OLX export and return its path: the folder `{dest_dir}/{org}-{course}-{run}`,
    or with `tarball=True` the file `{dest_dir}/{org}-{course}-{run}.tar.gz` whose top
    folder is `course/`, like Studio's. An existing folder or file is not overwritten.
    """
    dest_dir = Path(dest_dir)
    name = f"{org}-{course}-{run}"
    target = dest_dir / (f"{name}.tar.gz" if tarball else name)
    if target.exists():
        raise FileExistsError(target)
    dest_dir.mkdir(parents=True, exist_ok=True)
    if not tarball:
        _write_export(target, _plan(blocks, seed), org, course, run)
        return target
    with tempfile.TemporaryDirectory(dir=dest_dir) as tmp:
        export = Path(tmp) / "course"
        _write_export(export, _plan(blocks, seed), org, course, run)
        with tarfile.open(target, "w:gz") as archive:
            archive.add(export, arcname="course")
    return target


def _write_export(folder, root, org, course, run):
    def write(relpath, text):
        path = folder / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    write("course.xml", f"<course url_name={quoteattr(run)} org={quoteattr(org)} course={quoteattr(course)}/>\n")
    policy = {f"course/{run}": {"display_name": _course_name(course, run), "start": START.isoformat()}}
    write(f"policies/{run}/policy.json", json.dumps(policy, indent=4) + "\n")
    write("policies/assets.json", "{}\n")
    for block_type, block_id, folder_name in DETACHED:
        write(f"{folder_name}/{block_id}.html", f"<p>{block_type} {block_id} of {course}</p>\n")

    stack = [root]
    while stack:
        node = stack.pop()
        stack.extend(reversed(node.children))
        pointers = "".join(f"  <{c.block_type} url_name={quoteattr(c.block_id)}/>\n" for c in node.children)
        attrs = "".join(f" {key}={quoteattr(value)}" for key, value in node.attrs.items())
        if node.block_type == "course":
            write(f"course/{run}.xml", f'<course language="en">\n{pointers}  <wiki slug="{org}.{course}.{run}"/>\n</course>\n')
            continue
        display = f" display_name={quoteattr(node.display_name)}"
        path = f"{node.block_type}/{node.block_id}.xml"
        if node.block_type == "html":
            write(path, f"<html filename={quoteattr(node.block_id)}{display}/>\n")
            write(f"html/{node.block_id}.html", f"<p>{node.display_name}</p>\n")
        elif node.block_type == "problem":
            write(path, (
                f'<problem{display} max_attempts="2" weight="1.0">\n'
                '  <stringresponse answer="yes" type="ci">\n    <label>Type yes.</label>\n'
                '    <textline size="10"/>\n  </stringresponse>\n</problem>\n'
            ))
        elif node.block_type == "video":
            write(path, f'<video{display}{attrs} youtube_id_1_0="3_yD_cEKoCk" download_video="false"/>\n')
        else:
            write(path, f"<{node.block_type}{display}{attrs}>\n{pointers}</{node.block_type}>\n")
