"""
Fuzzing the OLX reader and the tarball extraction with hostile exports (hypothesis).

Random XML trees (known and unknown tags, pointers whose url_name climbs out with `..` and
`:`, attribute values that overflow or nest), random policy JSON of every type, broken bytes,
entity declarations, links inside and out. Whatever comes, the reader either reads a course
or raises OlxError in one line: never another exception. And it never opens anything outside
the export: an audit hook records every file opened or listed during the read, and sentinel
files next to the export (which a pointer escaping the folder would reach) never show in a
course or a message.

Bounded for CI: OLX_FUZZ_EXAMPLES examples per test (default 100; under 10 s each on a
laptop), no per-example deadline (a loaded CI machine would make one flaky), and the same
examples on every CI run (CI=true derandomizes; locally each run explores new ones).
"""

import io
import json
import os
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from clickhouse_outbox.sources.olx import SAMPLE_COURSE_DIR, OlxError, extract_tarball, read_olx_export

SENTINEL = "SENTINEL-outside-the-export"
FUZZ = settings(
    max_examples=int(os.environ.get("OLX_FUZZ_EXAMPLES", "100")),
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- what the reader opens ---------------------------------------------------------------------

_watch = {"on": False, "paths": []}


def _audit(event, args):
    if _watch["on"] and event in ("open", "os.scandir", "os.listdir") and args and isinstance(args[0], (str, bytes)):
        _watch["paths"].append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # hooks cannot be removed: this one records only while a test turns it on


def opened_during(read):
    """(read()'s result or exception, every path opened or listed meanwhile)."""
    _watch["paths"] = []
    _watch["on"] = True
    try:
        try:
            outcome = read()
        except Exception as exc:  # noqa: BLE001 (the test judges whatever was raised)
            outcome = exc
    finally:
        _watch["on"] = False
    return outcome, list(_watch["paths"])


def assert_confined(paths, export, area):
    """Every path under `area` (the test's folder) that was opened or listed is inside `export`."""
    export, area = os.path.realpath(export), os.path.realpath(area)
    for path in paths:
        real = os.path.realpath(path)
        assert not real.startswith("/dev/"), f"opened a device: {path}"
        if os.path.commonpath([real, area]) == area:
            assert os.path.commonpath([real, export]) == export, f"opened {path}, outside {export}"


read_olx_export(SAMPLE_COURSE_DIR)  # the reader's own imports are done before any audit

# -- hostile exports ---------------------------------------------------------------------------

TAGS = ["course", "chapter", "sequential", "vertical", "html", "problem", "video", "discussion",
        "split_test", "library_content", "wiki", "textbook", "x-unknown", "course_info"]
ESCAPES = ["..:..:secret", "..:..:..:secret", ":..:..:secret", "..:secret", "a:..:..:..:secret",
           "..", ".", "...", "~", "-", "secret", "..:..:outside:secret", "h", "v", "p"]
NUMBERS = ["1e400", "-1e400", "1e308", "NaN", "Infinity", "-0", "9" * 30, "1" + "0" * 5000, "0.5", "-1",
           "99999999999:00:00", "01:02:03", "12.5", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00",
           "2015-07-17T12:00:00+02:00", "true", "false", "null", '"quoted"', "[]", "{}", "[" * 3000, "{\"a\": [1]}"]
FIELDS = ["display_name", "graded", "start", "end", "enrollment_start", "announcement", "self_paced",
          "max_student_enrollments_allowed", "start_time", "end_time", "tabs", "language", "name", "slug"]

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
GOOD = ["Name", "true", "2015-01-01", "01:00:00", "12", "fr", '[{"type": "static_tab", "url_slug": "x"}]']
attr_value = st.one_of(st.sampled_from(GOOD), st.sampled_from(NUMBERS), st.sampled_from(ESCAPES), text)
attrs = st.dictionaries(st.sampled_from(FIELDS + ["url_name"]), attr_value, max_size=4)


@st.composite
def element(draw, depth=0):
    tag = draw(st.sampled_from(TAGS))
    el = ET.Element(tag, {k: _xml_safe(v) for k, v in draw(attrs).items()})
    if draw(st.booleans()):
        el.text = _xml_safe(draw(text))
    if depth < 4:
        for child in draw(st.lists(element(depth + 1), max_size=3)):
            el.append(child)
    return el


def pointer(url_name, tag):
    return ET.Element(tag, {"url_name": url_name})


def _xml_safe(value):
    return "".join(ch for ch in value if ch in "\t\n\r" or ord(ch) >= 0x20 and ch not in "\ufffe\uffff")


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), text,
              st.sampled_from([10**400, 2**31, -(2**31) - 1])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(FIELDS), inner, max_size=3)),
    max_leaves=10,
)


def json_bytes(value):
    return json.dumps(value, allow_nan=True).encode()


@st.composite
def xml_bytes(draw, root):
    data = ET.tostring(root, encoding="utf-8")
    how = draw(st.sampled_from(["plain"] * 8 + ["cut", "bytes", "entity", "deep", "latin"]))
    if how == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif how == "bytes":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=8)) + data[at:]
    elif how == "entity":
        data = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "../../secret.xml"><!ENTITY a "aa">]>'
                + data.replace(b"/>", b">&e;&a;</x-unknown>", 1))
    elif how == "deep":
        depth = draw(st.integers(150, 5000))
        data = b"<vertical>" * depth + b"</vertical>" * depth
    elif how == "latin":
        data = b'<?xml version="1.0" encoding="latin-1"?>' + data
    return data


@st.composite
def exports(draw):
    """({relpath: bytes}, [(link relpath, target)]) of one hostile export, run T1."""
    files = {}
    hostile = draw(st.booleans())  # else only the values are hostile: names stay inside, files are there
    names = ESCAPES if hostile else [name for name in ESCAPES if ".." not in name]
    run = draw(st.sampled_from(["T1", "T1", "T1", "..:..:secret", "..", "a:b"] if hostile else ["T1"]))
    files["course.xml"] = ET.tostring(ET.Element("course", {"url_name": run, "org": "Org", "course": "C"}))
    course = ET.Element("course", {k: _xml_safe(v) for k, v in draw(attrs).items() if k != "url_name"})
    pointers = draw(st.lists(st.tuples(st.sampled_from(names), st.sampled_from(["chapter", "html", "vertical"])),
                             min_size=1, max_size=4, unique=True))
    for name, tag in pointers:
        course.append(pointer(name, tag))
    for child in draw(st.lists(element(1), max_size=2)):
        course.append(child)
    files[f"course/{run.replace(':', '/')}.xml"] = draw(xml_bytes(course)) if hostile else ET.tostring(course)
    for name, tag in pointers:
        if ".." not in name and (not hostile or draw(st.integers(0, 9)) < 8):  # sometimes missing
            definition = draw(element(1))
            definition.tag = tag
            definition.attrib.pop("url_name", None)
            files[f"{tag}/{name.replace(':', '/')}.xml"] = (
                draw(xml_bytes(definition)) if hostile else ET.tostring(definition))
    if draw(st.booleans()):
        fields = st.dictionaries(st.just("course/T1"), st.dictionaries(st.sampled_from(FIELDS), json_values))
        policy = draw(st.one_of(json_values, st.dictionaries(st.just("course/T1"), json_values, max_size=1), fields)
                      if hostile else fields)
        files["policies/T1/policy.json"] = json_bytes(policy)
    if draw(st.booleans()):
        cutoffs = st.fixed_dictionaries({"GRADE_CUTOFFS": json_values})
        files["policies/T1/grading_policy.json"] = json_bytes(draw(st.one_of(json_values, cutoffs) if hostile else cutoffs))
    if hostile and draw(st.booleans()):
        files["policies/T1/policy.json"] = b"[" * draw(st.integers(100, 20_000))
    for folder in draw(st.lists(st.sampled_from(["tabs", "about", "info"]), max_size=2)):
        files[f"{folder}/{draw(st.sampled_from(['x.html', 'effort.html', 'updates.items.json', 'a b.html']))}"] = b"<p/>"
    links = [] if not hostile else draw(st.lists(st.tuples(
        st.sampled_from(["html/h.xml", "chapter/h.xml", "tabs", "about/effort.html", "policies", "vertical/v.xml"]),
        st.sampled_from(["../../secret.xml", "../../outside", "../../outside/secret.xml", "/dev/zero",
                         "../course.xml", "h.xml", "."]),
    ), max_size=2))
    return files, links


def write_export(base, files, links):
    root = base / "export"
    root.mkdir()
    for relpath, data in files.items():
        path = root / relpath
        try:
            if os.path.commonpath([os.path.realpath(path), str(root)]) != str(root):
                continue  # the test writes only inside the export
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except OSError:
            continue
    for relpath, target in links:
        path = root / relpath
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists() and not path.is_symlink():
                os.symlink(target, path)
        except OSError:
            continue
    return root


def plant_sentinels(base):
    (base / "secret.xml").write_text(f'<html display_name="{SENTINEL}"/>')
    (base / "outside").mkdir()
    (base / "outside/secret.xml").write_text(f'<chapter display_name="{SENTINEL}"/>')
    (base / "outside/T1").mkdir()
    (base / "outside/T1/policy.json").write_text(json.dumps({"course/T1": {"display_name": SENTINEL}}))
    (base / "outside/effort.html").write_text(SENTINEL)


def shown(course):
    """Every string a course hands on (names, ids, dates...), to look for the sentinel in."""
    return repr(course)


@FUZZ
@given(exports())
def test_the_reader_reads_or_refuses_in_one_line_and_stays_inside(export):
    files, links = export
    with tempfile.TemporaryDirectory(prefix="olx-fuzz-") as tmp:
        base = Path(tmp)
        plant_sentinels(base)
        root = write_export(base, files, links)
        outcome, paths = opened_during(lambda: read_olx_export(root))
        event("refused" if isinstance(outcome, Exception) else "read")
        if isinstance(outcome, Exception):
            assert isinstance(outcome, OlxError), f"{type(outcome).__name__}: {outcome}"
            message = str(outcome)
            assert "\n" not in message and SENTINEL not in message
        else:
            assert SENTINEL not in shown(outcome)
        assert_confined(paths, root, base)


# -- tarballs ----------------------------------------------------------------------------------

MEMBER_NAMES = ["course/course.xml", "course/html/h.xml", "course/../x", "../x", "/tmp/x", "course/a/../../x",
                "course", "course/h", "./course/h", "course\\..\\..\\x", "C:x", "course/link", "x"]


@st.composite
def members(draw):
    out = []
    for _ in range(draw(st.integers(1, 6))):
        name = draw(st.sampled_from(MEMBER_NAMES))
        kind = draw(st.sampled_from([tarfile.REGTYPE, tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE,
                                     tarfile.LNKTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE]))
        linkname = draw(st.sampled_from(MEMBER_NAMES + ["h", "../h", "../../secret.xml", ".", "link"]))
        out.append((name, kind, linkname, draw(st.binary(max_size=16))))
    return out


@FUZZ
@given(members())
def test_extraction_writes_only_inside_its_folder(tar_members):
    with tempfile.TemporaryDirectory(prefix="olx-tar-fuzz-") as tmp:
        base = Path(tmp)
        plant_sentinels(base)
        tarball = base / "export.tar.gz"
        with tarfile.open(tarball, "w:gz") as archive:
            for name, kind, linkname, data in tar_members:
                info = tarfile.TarInfo(name)
                info.type = kind
                if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                    info.linkname = linkname
                if kind == tarfile.REGTYPE:
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))
                else:
                    archive.addfile(info)
        before = sorted(p.relative_to(base) for p in base.rglob("*"))
        dest = base / "dest"
        outcome, paths = opened_during(lambda: extract_tarball(tarball, dest))
        event("refused" if isinstance(outcome, Exception) else "extracted")
        if isinstance(outcome, Exception):
            assert isinstance(outcome, OlxError), f"{type(outcome).__name__}: {outcome}"
            assert "\n" not in str(outcome)
        else:
            assert os.path.commonpath([os.path.realpath(outcome), os.path.realpath(dest)]) == os.path.realpath(dest)
        after = sorted(p.relative_to(base) for p in base.rglob("*") if not p.is_relative_to(dest))
        assert after == [p for p in before if not (base / p).is_relative_to(dest)]
        assert not any(p.is_symlink() for p in dest.rglob("*")) if dest.exists() else True
        for path in paths:
            real = os.path.realpath(path)
            assert real == os.path.realpath(tarball) or real.startswith(os.path.realpath(dest) + os.sep), path
