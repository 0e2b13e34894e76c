"""
OLX course exports, as Studio writes them, read into a `PublishedCourse`.

An export is a folder (or a `.tar.gz` whose single top folder is the export) holding
`course.xml` -> `course/{run}.xml` -> `chapter/`, `sequential/`, `vertical/`... files.
Only what the course tree reaches is published: `drafts/` and orphan files are never read.
The rules follow edx-platform's XML import (`xmodule/xml_block.py`, `modulestore/xml.py`):

* `course.xml` points to `course/{run}.xml`, unless it holds the course itself (older exports).
* A child element with exactly one attribute, `url_name`, and no content is a pointer to
  `{tag}/{url_name}.xml` (a `:` in the url_name is a `/` in the path). Any other child is
  an inline definition whose id is its `url_name`; without one, the id is derived the way
  edx-platform's import derives it (see `_ExportReader._derived_id`).
* Only container types (`CONTAINER_TYPES`) have block children; the inner XML of any other
  block is its content. The course block drops its `<wiki>` and `<textbook>` elements.
* `policies/{run}/policy.json` ("course/{run}", "{type}/{url_name}") overrides attributes.
  Attribute values are read as `values` says.
* Detached blocks come after the tree: `about/*` (type `about`), `info/*` (`course_info`),
  each sorted by id, then `tabs/*` (`static_tab`) in the order of the course's `tabs`
  policy, followed by tab files no tab names (sorted).

Every file is opened through `files.ExportFiles` (never outside the export folder, within
the bounds of `limits.Limits`) and parsed by `parsing`: a hostile export gets an OlxError
naming the file, like a broken one.

Block locations are `course_key.make_usage_key(type, url_name)`; the course block is
`type@course+block@course`, as in split-modulestore courses.
"""

import copy
import hashlib
import os
import tempfile
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

from opaque_keys import InvalidKeyError
from opaque_keys.edx.locator import BlockUsageLocator

from clickhouse_outbox.sources.base import Block, PublishedCourse
from clickhouse_outbox.sources.keys import NotACourseKey, parse_course_key
from clickhouse_outbox.sources.olx import values
from clickhouse_outbox.sources.olx.errors import OlxError
from clickhouse_outbox.sources.olx.files import ExportFiles
from clickhouse_outbox.sources.olx.limits import Limits
from clickhouse_outbox.sources.olx.parsing import parse_json, parse_xml
from clickhouse_outbox.sources.olx.tarball import extract_tarball

#: The sample course shipped with the package: course-v1:OpenedX+DemoX+2026_T1.
#: It reads as 46 tree blocks (1 course, 3 chapters, 6 sequentials, 10 verticals,
#: 26 leaves: 10 html, 11 problem, 3 video, 2 discussion), 45 parent->child edges and
#: 6 detached blocks (about: effort, overview, short_description; course_info: handouts,
#: updates; static_tab: syllabus). Its drafts/ vertical and html/orphan_note are not published.
SAMPLE_COURSE_DIR = Path(__file__).resolve().parent.parent.parent / "sample_course"

#: Block types whose child elements are blocks (the rest hold content).
CONTAINER_TYPES = frozenset({
    "course", "chapter", "sequential", "videosequence", "vertical", "split_test", "conditional",
    "library_content", "itembank", "library", "randomize",
})

#: edx-platform's `display_name` field defaults; other types fall back to the url_name.
DISPLAY_NAME_DEFAULTS = {
    "html": "Text",
    "problem": "Blank Problem",
    "video": "Video",
    "discussion": "Discussion",
    "about": "overview",
    "course_info": "Text",
    "static_tab": "Empty",
}

#: edx-platform's CourseFields.start default.
DEFAULT_START = datetime(2030, 1, 1, tzinfo=UTC)
DEFAULT_LOWEST_PASSING_GRADE = 0.5

_PLAIN_ID = BlockUsageLocator.ALLOWED_ID_RE  # opaque-keys' own pattern for block types and ids

#: Children of the course element that are course settings, not blocks.
COURSE_SETTING_TAGS = frozenset({"wiki", "textbook"})


def read_olx_export(path, limits=None) -> PublishedCourse:
    """Read an export folder or `.tar.gz` into a PublishedCourse, or raise OlxError."""
    path = Path(path)
    limits = limits or Limits.from_settings()
    if path.is_dir():
        return read_export_folder(path, limits)
    if path.is_file():
        with tempfile.TemporaryDirectory(prefix="olx-") as tmp:
            folder = extract_tarball(path, tmp, limits)
            return read_export_folder(folder, limits, shown_as=shown_in_tarball(path, tmp, folder))
    raise OlxError(f"{path}: no such export folder or .tar.gz")


def read_export_folder(folder, limits, shown_as=None) -> PublishedCourse:
    """Read the export folder `folder`; messages name its files under `shown_as` (default: the folder)."""
    return _ExportReader(ExportFiles(folder, limits, shown_as=shown_as)).read()


def shown_in_tarball(tarball, dest, folder):
    """How messages name the files of an export extracted from `tarball`: "{tarball}:{top folder}/"."""
    top = os.path.relpath(folder, dest)
    return f"{tarball}:" if top == "." else f"{tarball}:{top}/"


class _ExportReader:
    """One pass over one export folder; holds what the walk needs (key, policy, files)."""

    def __init__(self, files):
        self.files = files
        self.limits = files.limits
        self._show = files.show

    def read(self) -> PublishedCourse:
        pointer = self._parse("course.xml")
        org, course = pointer.get("org"), pointer.get("course")
        run = pointer.get("url_name") or pointer.get("slug")  # slug: edx-platform's older spelling
        if not (org and course and run):
            raise OlxError(f"{self._show('course.xml')}: needs url_name, org and course attributes")
        try:
            self.course_key = parse_course_key(f"course-v1:{org}+{course}+{run}")
        except NotACourseKey:
            raise OlxError(f"{self._show('course.xml')}: not a valid course key "
                           f"(org {org!r}, course {course!r}, run {run!r})") from None
        self.run = run
        self._prefix = "block-v1:" + str(self.course_key).split(":", 1)[1]
        self._used_ids = {}
        self._blocks = 0
        self.policy_file, self.policy = self._load_policy()

        if _is_course_pointer(pointer):
            course_file = f"course/{_pathname(run)}.xml"
            course_el = self._parse(course_file, pointed_from="course.xml")
        else:  # the whole course written inline in course.xml, as older exports do
            course_file, course_el = "course.xml", pointer
        attrs = self._attrs(course_el, "course", run)
        blocks = self._walk(course_el, course_file, attrs)
        root = str(self.course_key.make_usage_key("course", "course"))
        detached = self._detached(attrs, course_file)
        return self._course(attrs, course_file, root, blocks, detached)

    # -- files ---------------------------------------------------------------------------

    def _parse(self, relpath, pointed_from=None):
        data = self.files.read(relpath, pointed_from=pointed_from)
        return parse_xml(data, self._show(relpath), self.limits)

    def _load_json(self, relpath):
        data = self.files.read(relpath, missing_ok=True)
        if data is None:
            return None
        value = parse_json(data, self._show(relpath), self.limits)
        if not isinstance(value, dict):
            raise OlxError(f"{self._show(relpath)}: expected a JSON object, not {_json_type(value)}")
        return value

    def _load_policy(self):
        # policies/{run}/policy.json, or the older policies/{run}.json edx-platform still reads.
        for relpath in (f"policies/{self.run}/policy.json", f"policies/{self.run}.json"):
            policy = self._load_json(relpath)
            if policy is not None:
                for key, value in policy.items():
                    if not isinstance(value, dict):
                        raise OlxError(f"{self._show(relpath)}: {key!r} must map to a JSON object, "
                                       f"not {_json_type(value)}")
                return relpath, policy
        return None, {}

    # -- the tree ------------------------------------------------------------------------

    def _attrs(self, element, block_type, block_id):
        attrs = dict(element.attrib)
        attrs.pop("url_name", None)
        attrs.update(self.policy.get(f"{block_type}/{block_id}", ()))
        return attrs

    def _walk(self, course_el, course_file, course_attrs):
        """
        Every tree block by location, in depth-first pre-order, walked with a stack of
        (element, type, id, definition file, attrs, inherited graded, parent location).
        """
        blocks = {}
        parent_of = {}
        where = {}
        stack = [(course_el, "course", "course", course_file, course_attrs, False, None)]
        while stack:
            element, block_type, block_id, file, attrs, inherited, parent = stack.pop()
            location = self._location(block_type, block_id, file)
            if location in blocks:
                self._repeated(location, parent, parent_of, where)
            parent_of[location], where[location] = parent, file
            graded = self._value(attrs, "graded", values.as_bool, block_type, block_id, file)
            graded = inherited if graded is None else graded
            block = Block(
                location=location,
                block_type=block_type,
                display_name=self._display_name(attrs, block_type, block_id, file),
                graded=graded,
                completion_mode=completion_mode(block_type),
                fields=self._extra_fields(attrs, block_type, block_id, file),
            )
            blocks[location] = block
            if parent is not None:
                blocks[parent].children.append(location)
            if block_type in CONTAINER_TYPES:
                children = list(self._children(element, block_type, file))
                for child_el, child_type, child_id, child_file, child_attrs in reversed(children):
                    stack.append((child_el, child_type, child_id, child_file, child_attrs, graded, location))
        return blocks

    def _children(self, element, block_type, file):
        for child in element:
            tag = child.tag
            if not isinstance(tag, str) or (block_type == "course" and tag in COURSE_SETTING_TAGS):
                continue
            self._count_block(file)
            if _is_pointer(child):
                child_id = child.get("url_name")
                self._location(tag, child_id, file)  # a valid block id before it becomes a path
                child_file = f"{tag}/{_pathname(child_id)}.xml"
                definition = self._parse(child_file, pointed_from=file)
            else:
                child_id = child.get("url_name") or child.get("slug") or self._derived_id(child)
                child_file, definition = file, child
            self._used_ids.setdefault(tag, set()).add(child_id)
            yield definition, tag, child_id, child_file, self._attrs(definition, tag, child_id)

    def _count_block(self, file):
        self._blocks += 1
        if self._blocks >= self.limits.blocks:  # the course block makes one more
            raise OlxError(f"{self._show(file)}: the course has more than {self.limits.blocks} blocks "
                           "(CLICKHOUSE_OUTBOX_OLX_MAX_BLOCKS)")

    def _derived_id(self, element):
        """
        The id of an inline block without url_name, as edx-platform's import names it: its
        `name` or `display_name` made id-safe, or when that is missing or already taken,
        `{tag}[_{name}]_{sha1 of the element's canonical XML}[:12]` (+ `_2`, `_3`... for
        identical twins). edx-platform hashes its own serialization, so only the first form
        is guaranteed to match the platform's location.
        """
        tag = element.tag
        used = self._used_ids.setdefault(tag, set())
        name = element.get("name") or element.get("display_name")
        name = BlockUsageLocator.clean(name) if name else ""
        if name and name not in used:
            return name
        bare = copy.copy(element)
        bare.tail = None
        digest = hashlib.sha1(ET.canonicalize(ET.tostring(bare, encoding="unicode")).encode("utf-8")).hexdigest()
        base = f"{tag}_{name}_{digest[:12]}" if name else f"{tag}_{digest[:12]}"
        candidate, n = base, 1
        while candidate in used:
            n += 1
            candidate = f"{base}_{n}"
        return candidate

    def _location(self, block_type, block_id, file):
        # What make_usage_key(...) prints, without building a key for every block; ids the
        # strict pattern does not match go through opaque-keys, which accepts or rejects them.
        if _PLAIN_ID.match(block_type) and _PLAIN_ID.match(block_id):
            return f"{self._prefix}+type@{block_type}+block@{block_id}"
        try:
            return str(self.course_key.make_usage_key(block_type, block_id))
        except InvalidKeyError:
            raise OlxError(
                f"{self._show(file)}: {block_type} url_name {_shorten(block_id)} is not a valid block id"
            ) from None

    def _repeated(self, location, parent, parent_of, where):
        """A second reference to a block: a cycle if it is its own ancestor, else a shared block."""
        ancestor = parent
        while ancestor is not None:
            if ancestor == location:
                raise OlxError(f"{self._show(where[parent])}: child cycle, {parent} contains {location}, its ancestor")
            ancestor = parent_of[ancestor]
        first_parent = parent_of[location]
        raise OlxError(
            f"{self._show(where[parent])}: {location} is used twice "
            f"(also under {first_parent} in {self._show(where[first_parent])})"
        )

    # -- fields --------------------------------------------------------------------------

    def _value(self, attrs, name, coerce, block_type, block_id, file):
        value = attrs.get(name)
        if value is None:
            return None
        try:
            return coerce(value)
        except (TypeError, ValueError) as exc:
            if name in self.policy.get(f"{block_type}/{block_id}", ()):
                file = self.policy_file
            raise OlxError(
                f"{self._show(file)}: {block_type} {_shorten(block_id)}: bad {name} {_shorten(value)} "
                f"({_shorten(str(exc), 200, quote=False)})"
            ) from None

    def _display_name(self, attrs, block_type, block_id, file):
        name = self._value(attrs, "display_name", values.as_str, block_type, block_id, file)
        if name is None:
            # edx-platform's display_name_with_default: the field default, else the url_name.
            name = DISPLAY_NAME_DEFAULTS.get(block_type) or block_id.replace("_", " ")
        return name

    def _extra_fields(self, attrs, block_type, block_id, file):
        if block_type != "video":
            return {}
        # RelativeTime fields; unset means 0, which for the end time means "to the end".
        start = self._value(attrs, "start_time", values.as_seconds, block_type, block_id, file)
        end = self._value(attrs, "end_time", values.as_seconds, block_type, block_id, file)
        return {"video_start_time": start or 0.0, "video_end_time": end or 0.0}

    # -- detached blocks and the course --------------------------------------------------

    def _detached(self, course_attrs, course_file):
        detached = []
        for folder, block_type in (("about", "about"), ("info", "course_info")):
            for block_id in sorted(self._content_ids(folder)):
                detached.append(self._detached_block(block_type, block_id, DISPLAY_NAME_DEFAULTS[block_type], folder))
        tab_ids = self._content_ids("tabs")
        tabs = self._value(course_attrs, "tabs", values.as_list, "course", self.run, course_file) or []
        for tab in tabs:
            slug = tab.get("url_slug") if isinstance(tab, dict) and tab.get("type") == "static_tab" else None
            if slug is not None and not isinstance(slug, str):
                where = self.policy_file if "tabs" in self.policy.get(f"course/{self.run}", ()) else course_file
                raise OlxError(f"{self._show(where)}: course {self.run}: bad tabs (a url_slug is "
                               f"{_json_type(slug)}, not a string)")
            if slug in tab_ids:
                tab_ids.discard(slug)
                detached.append(self._detached_block("static_tab", slug, str(tab.get("name") or ""), "tabs"))
        for block_id in sorted(tab_ids):
            # edx-platform imports every tabs/ file; one no tab names gets an empty name.
            detached.append(self._detached_block("static_tab", block_id, "", "tabs"))
        return detached

    def _content_ids(self, folder):
        """Block ids of the files in about/, info/ or tabs/ (edx-platform's `_load_extra_content`)."""
        ids = set()
        for name in self.files.file_names(folder):
            if name.startswith(".") or name.endswith("~"):
                continue
            # "updates.items.json" sets the `items` field of block "updates".
            ids.add(name.split(".")[0] if name.endswith(".json") else os.path.splitext(name)[0])
        return ids

    def _detached_block(self, block_type, block_id, display_name, folder):
        self._count_block(folder)
        location = self._location(block_type, block_id, folder)
        return Block(location=location, block_type=block_type, display_name=display_name,
                     completion_mode=completion_mode(block_type))

    def _course(self, attrs, file, root, blocks, detached):
        def value(name, coerce, default=None):
            result = self._value(attrs, name, coerce, "course", self.run, file)
            return default if result is None else result

        return PublishedCourse(
            course_key=self.course_key,
            root=root,
            blocks=blocks,
            detached=detached,
            display_name=blocks[root].display_name,
            start=value("start", values.as_date, DEFAULT_START),
            end=value("end", values.as_date),
            enrollment_start=value("enrollment_start", values.as_date),
            enrollment_end=value("enrollment_end", values.as_date),
            self_paced=value("self_paced", values.as_bool, False),
            advertised_start=value("advertised_start", values.as_str),
            announcement=value("announcement", values.as_date),
            lowest_passing_grade=self._lowest_passing_grade(),
            invitation_only=value("invitation_only", values.as_bool, False),
            max_student_enrollments_allowed=value("max_student_enrollments_allowed", values.as_int),
            effort=self._effort(),
            enable_proctored_exams=value("enable_proctored_exams", values.as_bool, False),
            entrance_exam_enabled=value("entrance_exam_enabled", values.as_bool, False),
            language=value("language", values.as_str, ""),
        )

    def _lowest_passing_grade(self):
        relpath = f"policies/{self.run}/grading_policy.json"
        cutoffs = (self._load_json(relpath) or {}).get("GRADE_CUTOFFS")
        if not cutoffs:
            return DEFAULT_LOWEST_PASSING_GRADE
        if not isinstance(cutoffs, dict):
            raise OlxError(f"{self._show(relpath)}: bad GRADE_CUTOFFS (expected a JSON object, not {_json_type(cutoffs)})")
        try:
            return min(values.as_fraction(v) for v in cutoffs.values())
        except (TypeError, ValueError) as exc:
            raise OlxError(f"{self._show(relpath)}: bad GRADE_CUTOFFS ({_shorten(str(exc), 200, quote=False)})") from None

    def _effort(self):
        text = self.files.read_text("about/effort.html", missing_ok=True)
        return None if text is None else text.strip()


def _is_pointer(element):
    """edx-platform's is_pointer_tag: only a url_name attribute, no children, no text."""
    return (
        len(element) == 0
        and list(element.attrib) == ["url_name"]
        and not (element.text and element.text.strip())
    )


def _is_course_pointer(element):
    """course.xml is usually a pointer to course/{run}.xml; with more in it, it is the course."""
    return (
        len(element) == 0
        and set(element.attrib) <= {"url_name", "slug", "org", "course"}
        and not (element.text and element.text.strip())
    )


def _pathname(url_name):
    return url_name.replace(":", "/")


def _json_type(value):
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _shorten(value, limit=80, quote=True):
    """repr(value) (or the text itself), on one line and cut to `limit` characters: a message quotes a value."""
    text = repr(value) if quote or not value.isprintable() else value
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def completion_mode(block_type):
    """The XBlockCompletionMode value the platform's block class declares, by type."""
    if block_type in CONTAINER_TYPES:
        return "aggregator"
    if block_type == "discussion":
        return "excluded"
    return "completable"
