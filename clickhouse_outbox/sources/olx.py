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
  Attribute values are read like edx-platform's `deserialize_field`: JSON if it parses,
  otherwise the raw string.
* Detached blocks come after the tree: `about/*` (type `about`), `info/*` (`course_info`),
  each sorted by id, then `tabs/*` (`static_tab`) in the order of the course's `tabs`
  policy, followed by tab files no tab names (sorted).

Block locations are `course_key.make_usage_key(type, url_name)`; the course block is
`type@course+block@course`, as in split-modulestore courses.
"""

import copy
import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import uuid
import xml.etree.ElementTree as ET
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from urllib.parse import quote, unquote

from opaque_keys import InvalidKeyError
from opaque_keys.edx.keys import CourseKey
from opaque_keys.edx.locator import BlockUsageLocator

from clickhouse_outbox import conf
from clickhouse_outbox.sources.base import Block, CourseNotFound, CourseSource, CourseSourceError, PublishedCourse

log = logging.getLogger(__name__)

#: The sample course shipped with the package: course-v1:OpenedX+DemoX+2026_T1.
#: It reads as 46 tree blocks (1 course, 3 chapters, 6 sequentials, 10 verticals,
#: 26 leaves: 10 html, 11 problem, 3 video, 2 discussion), 45 parent->child edges and
#: 6 detached blocks (about: effort, overview, short_description; course_info: handouts,
#: updates; static_tab: syllabus). Its drafts/ vertical and html/orphan_note are not published.
SAMPLE_COURSE_DIR = Path(__file__).resolve().parent.parent / "sample_course"

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


class OlxError(CourseSourceError):
    """The export is broken; the message names the offending file."""


def read_olx_export(path) -> PublishedCourse:
    """Read an export folder or `.tar.gz` into a PublishedCourse, or raise OlxError."""
    path = Path(path)
    if path.is_dir():
        return _ExportReader(path).read()
    if path.is_file():
        with tempfile.TemporaryDirectory(prefix="olx-") as tmp:
            return _ExportReader(extract_tarball(path, tmp)).read()
    raise OlxError(f"{path}: no such export folder or .tar.gz")


def extract_tarball(path, dest) -> Path:
    """
    Extract an export tarball into `dest` and return the export's folder.

    Members are checked before anything is written: an absolute path, a `..` or a link
    pointing outside raises OlxError (on top of tarfile's own 'data' filter).
    """
    path, dest = Path(path), Path(dest)
    try:
        with tarfile.open(path, "r:*") as archive:
            tops = _check_members(path, archive.getmembers())
            archive.extractall(dest, filter="data")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:  # EOFError: a truncated .gz
        raise OlxError(f"{path}: not a readable .tar.gz export ({exc})") from exc
    if "" in tops or (dest / "course.xml").is_file():
        return dest
    if len(tops) == 1:
        return dest / tops.pop()
    raise OlxError(f"{path}: expected one top folder holding course.xml, found {sorted(tops) or 'nothing'}")


def _check_members(path, members):
    """Refuse unsafe members; return the visible top-level names ("" for a file at the top)."""
    tops = set()
    for member in members:
        _check_member(path, member)
        parts = [p for p in PurePosixPath(member.name).parts if p != "."]
        if parts and not parts[0].startswith("."):  # ignore ._* / .DS_Store litter from macOS tar
            tops.add(parts[0] if len(parts) > 1 or member.isdir() else "")
    return tops


def _check_member(path, member):
    name = member.name
    for candidate, what in ((name, "path"), (member.linkname if member.issym() or member.islnk() else "", "link")):
        if not candidate:
            continue
        posix = PurePosixPath(candidate.replace("\\", "/"))
        if posix.is_absolute() or ".." in posix.parts or (len(candidate) > 1 and candidate[1] == ":"):
            raise OlxError(f"{path}: member {name!r} has a {what} escaping the extraction folder ({candidate!r})")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise OlxError(f"{path}: member {name!r} is not a regular file or folder")


class _ExportReader:
    """One pass over one export folder; holds what the walk needs (key, policy, root)."""

    def __init__(self, root):
        self.root = Path(root)
        self._dir = str(self.root)

    def read(self) -> PublishedCourse:
        pointer = self._parse("course.xml")
        org, course = pointer.get("org"), pointer.get("course")
        run = pointer.get("url_name") or pointer.get("slug")  # slug: edx-platform's older spelling
        if not (org and course and run):
            raise OlxError(f"{self._show('course.xml')}: needs url_name, org and course attributes")
        try:
            self.course_key = CourseKey.from_string(f"course-v1:{org}+{course}+{run}")
        except InvalidKeyError as exc:
            raise OlxError(f"{self._show('course.xml')}: not a valid course key ({exc})") from exc
        self.run = run
        self._prefix = "block-v1:" + str(self.course_key).split(":", 1)[1]
        self._used_ids = {}
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

    def _show(self, relpath):
        return str(self.root / relpath)

    def _parse(self, relpath, pointed_from=None):
        try:
            return ET.parse(os.path.join(self._dir, relpath)).getroot()
        except FileNotFoundError:
            origin = f" (pointed to by {self._show(pointed_from)})" if pointed_from else ""
            raise OlxError(f"{self._show(relpath)}: missing{origin}") from None
        except ET.ParseError as exc:
            raise OlxError(f"{self._show(relpath)}: malformed XML ({exc})") from None
        except OSError as exc:
            raise OlxError(f"{self._show(relpath)}: unreadable ({exc})") from None

    def _load_json(self, relpath):
        try:
            with open(self.root / relpath, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except (ValueError, OSError) as exc:
            raise OlxError(f"{self._show(relpath)}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise OlxError(f"{self._show(relpath)}: expected a JSON object")
        return data

    def _load_policy(self):
        # policies/{run}/policy.json, or the older policies/{run}.json edx-platform still reads.
        for relpath in (f"policies/{self.run}/policy.json", f"policies/{self.run}.json"):
            policy = self._load_json(relpath)
            if policy is not None:
                for key, value in policy.items():
                    if not isinstance(value, dict):
                        raise OlxError(f"{self._show(relpath)}: {key!r} must map to a JSON object")
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
            graded = self._value(attrs, "graded", _as_bool, block_type, block_id, file)
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
            if _is_pointer(child):
                child_id = child.get("url_name")
                child_file = f"{tag}/{_pathname(child_id)}.xml"
                definition = self._parse(child_file, pointed_from=file)
            else:
                child_id = child.get("url_name") or child.get("slug") or self._derived_id(child)
                child_file, definition = file, child
            self._used_ids.setdefault(tag, set()).add(child_id)
            yield definition, tag, child_id, child_file, self._attrs(definition, tag, child_id)

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
        except InvalidKeyError as exc:
            raise OlxError(f"{self._show(file)}: {block_type} url_name {block_id!r} is not a valid block id") from exc

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
            raise OlxError(f"{self._show(file)}: {block_type} {block_id}: bad {name} {value!r} ({exc})") from None

    def _display_name(self, attrs, block_type, block_id, file):
        name = self._value(attrs, "display_name", _as_str, block_type, block_id, file)
        if name is None:
            # edx-platform's display_name_with_default: the field default, else the url_name.
            name = DISPLAY_NAME_DEFAULTS.get(block_type) or block_id.replace("_", " ")
        return name

    def _extra_fields(self, attrs, block_type, block_id, file):
        if block_type != "video":
            return {}
        # RelativeTime fields; unset means 0, which for the end time means "to the end".
        start = self._value(attrs, "start_time", _as_seconds, block_type, block_id, file)
        end = self._value(attrs, "end_time", _as_seconds, block_type, block_id, file)
        return {"video_start_time": start or 0.0, "video_end_time": end or 0.0}

    # -- detached blocks and the course --------------------------------------------------

    def _detached(self, course_attrs, course_file):
        detached = []
        for folder, block_type in (("about", "about"), ("info", "course_info")):
            for block_id in sorted(self._content_ids(folder)):
                detached.append(self._detached_block(block_type, block_id, DISPLAY_NAME_DEFAULTS[block_type], folder))
        tab_ids = self._content_ids("tabs")
        tabs = self._value(course_attrs, "tabs", _as_list, "course", self.run, course_file) or []
        for tab in tabs:
            slug = tab.get("url_slug") if isinstance(tab, dict) and tab.get("type") == "static_tab" else None
            if slug in tab_ids:
                tab_ids.discard(slug)
                detached.append(self._detached_block("static_tab", slug, str(tab.get("name") or ""), "tabs"))
        for block_id in sorted(tab_ids):
            # edx-platform imports every tabs/ file; one no tab names gets an empty name.
            detached.append(self._detached_block("static_tab", block_id, "", "tabs"))
        return detached

    def _content_ids(self, folder):
        """Block ids of the files in about/, info/ or tabs/ (edx-platform's `_load_extra_content`)."""
        try:
            entries = list(os.scandir(self.root / folder))
        except FileNotFoundError:
            return set()
        ids = set()
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name.endswith("~") or not entry.is_file():
                continue
            # "updates.items.json" sets the `items` field of block "updates".
            ids.add(name.split(".")[0] if name.endswith(".json") else os.path.splitext(name)[0])
        return ids

    def _detached_block(self, block_type, block_id, display_name, folder):
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
            start=value("start", _as_date, DEFAULT_START),
            end=value("end", _as_date),
            enrollment_start=value("enrollment_start", _as_date),
            enrollment_end=value("enrollment_end", _as_date),
            self_paced=value("self_paced", _as_bool, False),
            advertised_start=value("advertised_start", _as_str),
            announcement=value("announcement", _as_date),
            lowest_passing_grade=self._lowest_passing_grade(),
            invitation_only=value("invitation_only", _as_bool, False),
            max_student_enrollments_allowed=value("max_student_enrollments_allowed", _as_int),
            effort=self._effort(),
            enable_proctored_exams=value("enable_proctored_exams", _as_bool, False),
            entrance_exam_enabled=value("entrance_exam_enabled", _as_bool, False),
            language=value("language", _as_str, ""),
        )

    def _lowest_passing_grade(self):
        relpath = f"policies/{self.run}/grading_policy.json"
        cutoffs = (self._load_json(relpath) or {}).get("GRADE_CUTOFFS")
        if not cutoffs:
            return DEFAULT_LOWEST_PASSING_GRADE
        try:
            return float(min(float(v) for v in cutoffs.values()))
        except (AttributeError, TypeError, ValueError) as exc:
            raise OlxError(f"{self._show(relpath)}: bad GRADE_CUTOFFS ({exc})") from None

    def _effort(self):
        try:
            return (self.root / "about" / "effort.html").read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise OlxError(f"{self._show('about/effort.html')}: unreadable ({exc})") from None


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


def completion_mode(block_type):
    """The XBlockCompletionMode value the platform's block class declares, by type."""
    if block_type in CONTAINER_TYPES:
        return "aggregator"
    if block_type == "discussion":
        return "excluded"
    return "completable"


# -- attribute values, read like edx-platform's deserialize_field + Field.from_json ---------

_JSON_STARTS = frozenset('"[{-0123456789tfnNI')

def _loaded(value):
    """A policy value as is; an XML attribute as JSON if it parses, else the raw string."""
    if isinstance(value, str) and value[:1] in _JSON_STARTS:
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _as_str(value):
    loaded = _loaded(value)
    if loaded is None:
        return None
    return loaded if isinstance(loaded, str) else str(value)


def _as_bool(value):
    loaded = _loaded(value)
    if loaded is None:
        return None
    if isinstance(loaded, str):
        return loaded.strip().lower() == "true"
    return bool(loaded)


def _as_int(value):
    loaded = _loaded(value)
    if loaded is None or loaded == "":
        return None
    return int(loaded)


def _as_list(value):
    loaded = _loaded(value)
    if loaded is None:
        return None
    if not isinstance(loaded, list):
        raise TypeError("expected a list")
    return loaded


def _as_date(value):
    loaded = _loaded(value)
    if loaded is None or loaded == "":
        return None
    if isinstance(loaded, bool):
        raise TypeError("expected a date")
    if isinstance(loaded, (int, float)):  # edx-platform's Date field: milliseconds since the epoch
        return datetime.fromtimestamp(loaded / 1000, tz=UTC)
    parsed = datetime.fromisoformat(str(loaded).strip())
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _as_seconds(value):
    loaded = _loaded(value)
    if not loaded:
        return None
    if isinstance(loaded, bool):
        raise TypeError("expected a time")
    if isinstance(loaded, (int, float)):
        return float(loaded)
    hours, minutes, seconds = str(loaded).strip().split(":")
    return timedelta(hours=int(hours), minutes=int(minutes), seconds=float(seconds)).total_seconds()


# -- the folder of exports -------------------------------------------------------------------

def folder_name(course_key) -> str:
    """The folder of a course: its key, percent-encoded where a filesystem might object (reversible)."""
    return quote(str(course_key), safe="+-_.~")


class OlxFolderSource(CourseSource):
    """
    The course source of the standalone project: one folder per course under `root`
    (default: the CLICKHOUSE_OUTBOX_OLX_DIR setting, read at call time), named by
    `folder_name(course_key)` and filled by `add_export`. Folders starting with "." are
    work in progress and ignored.
    """

    def __init__(self, root=None):
        self._root = root

    @property
    def root(self) -> Path:
        root = self._root if self._root is not None else conf.olx_dir()
        if not root:
            raise CourseSourceError("No OLX folder: set CLICKHOUSE_OUTBOX_OLX_DIR")
        return Path(root)

    def get_course(self, course_key) -> PublishedCourse:
        key = _as_course_key(course_key)
        folder = self.root / folder_name(key)
        if not (folder / "course.xml").is_file():
            raise CourseNotFound(f"{key}: no OLX export in {self.root}")
        course = _ExportReader(folder).read()
        if course.course_key != key:
            raise CourseSourceError(f"{folder}: holds {course.course_key}, not {key}")
        return course

    def course_keys(self):
        return sorted(self._course_folders(), key=str)

    def course_keys_changed_since(self, since):
        """Courses whose export was added (or replaced) at or after `since`: the folder's time."""
        cutoff = since.timestamp()
        return sorted((key for key, mtime in self._course_folders().items() if mtime >= cutoff), key=str)

    def published_times(self, course_keys):
        """When each course's export was put in place (the folder's time): an export replaced is a new publish."""
        folders = {str(key): mtime for key, mtime in self._course_folders().items()}
        return {str(key): datetime.fromtimestamp(folders[str(key)], tz=UTC) for key in course_keys
                if str(key) in folders}

    def _course_folders(self):
        """{course key: when its export was put in place (a POSIX time)}."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return {}
        keys = {}
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            try:
                keys[CourseKey.from_string(unquote(entry.name))] = entry.stat().st_mtime
            except InvalidKeyError:
                log.debug("Skipping %s: not a course folder", entry.path)
        return keys

    def add_export(self, path) -> CourseKey:
        """
        Add (or replace) a course from an export folder or `.tar.gz`.

        The export is read first, so a broken one raises OlxError and changes nothing; it is
        staged in a hidden folder next to its destination, then renamed into place.
        """
        path = Path(path)
        root = self.root
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=root))
        try:
            if path.is_dir():
                course = _ExportReader(path).read()
                export = staging / "export"
                shutil.copytree(path, export, symlinks=False)
            elif path.is_file():
                export = extract_tarball(path, staging / "export")
                course = _ExportReader(export).read()
            else:
                raise OlxError(f"{path}: no such export folder or .tar.gz")
            _swap_into_place(export, root / folder_name(course.course_key))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("Added OLX export of %s from %s", course.course_key, path)
        return course.course_key


def _swap_into_place(new, target):
    """Rename `new` to `target`; an older `target` is renamed away first and then removed."""
    old = None
    if target.exists():
        old = target.with_name(f".replaced-{uuid.uuid4().hex}")
        os.rename(target, old)
    try:
        os.rename(new, target)
    except OSError:
        if old is not None:
            os.rename(old, target)
        raise
    os.utime(target)  # the time the course was (re)published here: copytree kept the export's own
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _as_course_key(course_key):
    if isinstance(course_key, CourseKey):
        return course_key
    try:
        return CourseKey.from_string(str(course_key))
    except InvalidKeyError:
        raise CourseNotFound(f"{course_key!r} is not a course key") from None
