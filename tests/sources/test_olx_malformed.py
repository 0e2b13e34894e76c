"""
Malformed values in an export (numbers that overflow, values of the wrong JSON type, bad
encodings, entity declarations) each give a one-line OlxError naming the file, never
another exception; and `outbox_load_olx` goes on with its other paths.
"""

import io

import pytest
from django.core.management import CommandError, call_command

from clickhouse_outbox.models import Snapshot
from clickhouse_outbox.sources.olx import OlxError, read_olx_export
from clickhouse_outbox.testing.generator import write_course_export

POLICY = "policies/T1/policy.json"
GRADING = "policies/T1/grading_policy.json"


def course_policy(**fields):
    import json

    return json.dumps({"course/T1": fields})


CASES = {
    # name: (files, the file the message names, a fragment of the message)
    "start in ms overflows": ({POLICY: '{"course/T1": {"start": 1e400}}'}, POLICY, "bad start"),
    "negative start overflows": ({"course/T1.xml": '<course start="-1e300"><chapter url_name="ch"/></course>'},
                                 "course/T1.xml", "bad start"),
    "start past year 9999 in UTC": ({POLICY: course_policy(start="9999-12-31T23:59:59-05:00")}, POLICY, "bad start"),
    "start before year 1 in UTC": ({POLICY: course_policy(end="0001-01-01T00:00:00+05:00")}, POLICY, "bad end"),
    "enrollment cap overflows": ({POLICY: '{"course/T1": {"max_student_enrollments_allowed": 1e400}}'}, POLICY,
                                 "bad max_student_enrollments_allowed"),
    "enrollment cap out of range": ({POLICY: course_policy(max_student_enrollments_allowed=10**30)}, POLICY,
                                    "bad max_student_enrollments_allowed"),
    "enrollment cap is NaN": ({POLICY: '{"course/T1": {"max_student_enrollments_allowed": NaN}}'}, POLICY,
                              "bad max_student_enrollments_allowed"),
    "video time overflows": ({"chapter/ch.xml": '<chapter><video url_name="v" start_time="99999999999:00:00"/></chapter>'},
                             "chapter/ch.xml", "bad start_time"),
    "video time infinite": ({"chapter/ch.xml": '<chapter><video url_name="v" end_time="1e400"/></chapter>'},
                            "chapter/ch.xml", "bad end_time"),
    "grade cutoff infinite": ({GRADING: '{"GRADE_CUTOFFS": {"A": 1e400}}'}, GRADING, "GRADE_CUTOFFS"),
    "grade cutoff overflows a float": ({GRADING: '{"GRADE_CUTOFFS": {"A": 1' + "0" * 400 + "}}"}, GRADING,
                                       "GRADE_CUTOFFS"),
    "grade cutoffs a list": ({GRADING: '{"GRADE_CUTOFFS": [0.5]}'}, GRADING, "GRADE_CUTOFFS"),
    "grading policy a list": ({GRADING: "[]"}, GRADING, "JSON object"),
    "policy a string": ({POLICY: '"course"'}, POLICY, "JSON object"),
    "policy entry a number": ({POLICY: '{"course/T1": 5}'}, POLICY, "'course/T1'"),
    "tabs a dict": ({POLICY: course_policy(tabs={"type": "static_tab"})}, POLICY, "bad tabs"),
    "tab slug a list": ({POLICY: course_policy(tabs=[{"type": "static_tab", "url_slug": ["x"]}]),
                         "tabs/x.html": "<p/>"}, POLICY, "url_slug"),
    "tab name nested deep in an attribute": ({"course/T1.xml": (
        """<course tabs='[{"type": "static_tab", "url_slug": "x", "name": """ + "[" * 900 + "]" * 900
        + """}]'><chapter url_name="ch"/></course>"""), "tabs/x.html": "<p/>"}, "course/T1.xml", "bad tabs"),
    "display name nested very deep": ({"chapter/ch.xml": '<chapter display_name="' + "[" * 50_000 + '"/>'},
                                      "chapter/ch.xml", "bad display_name"),
    "xml not UTF-8": ({"chapter/ch.xml": b'<chapter display_name="\xff\xfe"/>'}, "chapter/ch.xml", "malformed XML"),
    "xml declaring an unknown encoding": ({"chapter/ch.xml": '<?xml version="1.0" encoding="klingon"?><chapter/>'},
                                          "chapter/ch.xml", "malformed XML"),
    "policy not UTF-8": ({POLICY: b'{"course/T1": {"display_name": "\xe9"}}'}, POLICY, "not valid JSON"),
    "effort not UTF-8": ({"about/effort.html": b"\xff\xfe 3 hours"}, "about/effort.html", "unreadable"),
    "billion laughs": ({"chapter/ch.xml": (
        '<?xml version="1.0"?><!DOCTYPE chapter [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]><chapter display_name="&c;"/>'
    )}, "chapter/ch.xml", "entit"),
    "entity in UTF-16": ({"chapter/ch.xml": (
        '\ufeff<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE chapter [<!ENTITY a "x">]><chapter display_name="&a;"/>'
    ).encode("utf-16-le")}, "chapter/ch.xml", "entit"),
    "entity in UTF-16 without a BOM": ({"chapter/ch.xml": (
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE chapter [<!ENTITY a "x">]><chapter display_name="&a;"/>'
    ).encode("utf-16-be")}, "chapter/ch.xml", "entit"),
    "external entity": ({"chapter/ch.xml": (
        '<?xml version="1.0"?><!DOCTYPE chapter [<!ENTITY x SYSTEM "file:///etc/hostname">]>'
        '<chapter display_name="&x;"/>'
    )}, "chapter/ch.xml", "entit"),
}


@pytest.fixture
def write_export(make_export):
    def write(files):
        text = {path: value for path, value in files.items() if isinstance(value, str)}
        root = make_export(text)
        for path, value in files.items():
            if isinstance(value, bytes):
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                (root / path).write_bytes(value)
        return root

    return write


@pytest.mark.parametrize("case", list(CASES))
def test_a_malformed_value_is_one_line_naming_the_file(write_export, case):
    files, named, fragment = CASES[case]
    root = write_export(files)
    with pytest.raises(OlxError) as caught:
        read_olx_export(root)
    message = str(caught.value)
    assert str(root / named) in message
    assert fragment in message
    assert "\n" not in message and len(message) < 1000


def test_entities_are_never_expanded(write_export):
    # Even a harmless internal entity is refused: expansion is how entity bombs work.
    root = write_export({"chapter/ch.xml": '<!DOCTYPE chapter [<!ENTITY n "Name">]><chapter display_name="&n;"/>'})
    with pytest.raises(OlxError, match="entit"):
        read_olx_export(root)


def test_a_doctype_without_entities_is_read(write_export):
    course = read_olx_export(write_export({"chapter/ch.xml": '<!DOCTYPE chapter><chapter display_name="Fine"/>'}))
    assert course.blocks[course.blocks[course.root].children[0]].display_name == "Fine"


@pytest.mark.django_db
def test_load_olx_reports_each_hostile_export_in_one_line_and_loads_the_others(olx_dir, tmp_path, write_export):
    hostile = [
        write_export({POLICY: '{"course/T1": ' + "[" * 100_000 + "]" * 100_000 + "}"}),
        write_export({POLICY: '{"course/T1": {"start": 1e400}}'}),
        write_export({"chapter/ch.xml": '<chapter><html url_name="..:..:..:secret"/></chapter>'}),
        write_export({POLICY: course_policy(tabs=[{"type": "static_tab", "url_slug": {"a": 1}}]),
                      "tabs/x.html": "<p/>"}),
    ]
    good = [write_course_export(tmp_path / "good1", blocks=20, run="G1"),
            write_course_export(tmp_path / "good2", blocks=20, run="G2", tarball=True)]
    paths = [hostile[0], good[0], *hostile[1:], good[1]]
    err = io.StringIO()
    with pytest.raises(CommandError, match=f"{len(hostile)} of {len(paths)} exports were not published"):
        call_command("outbox_load_olx", *map(str, paths), stdout=io.StringIO(), stderr=err)
    lines = err.getvalue().splitlines()
    assert len(lines) == len(hostile)
    for path, line in zip(hostile, lines, strict=True):
        assert line.startswith(f"{path}: not loaded: {path}")
    assert sorted(Snapshot.objects.filter(status=Snapshot.Status.QUEUED).values_list("subject", flat=True)) == [
        "course-v1:GenX+Gen101+G1", "course-v1:GenX+Gen101+G2",
    ]
