"""
The OLX reader's bounds (CLICKHOUSE_OUTBOX_OLX_MAX_*): a file, a value, a nesting, an
export or a course over its bound is refused with the file and the setting named, before
the costly work (Python 3.11's expat is quadratic on huge attribute values).
"""

import pytest

from clickhouse_outbox.sources.olx import OlxError, read_olx_export
from tests.sources.conftest import MINIMAL


def refused(root, *fragments):
    with pytest.raises(OlxError) as caught:
        read_olx_export(root)
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_a_file_over_the_size_bound_is_refused_before_it_is_parsed(make_export, settings):
    settings.CLICKHOUSE_OUTBOX_OLX_MAX_FILE_BYTES = 64 * 1024
    # Malformed too: the size is checked first, so the message is about the size.
    root = make_export({"chapter/ch.xml": '<chapter display_name="' + "x" * 70_000})
    refused(root, str(root / "chapter/ch.xml"), "70023 bytes", "CLICKHOUSE_OUTBOX_OLX_MAX_FILE_BYTES")


def test_a_policy_over_the_size_bound_is_refused(make_export, settings):
    settings.CLICKHOUSE_OUTBOX_OLX_MAX_FILE_BYTES = 64 * 1024
    root = make_export({"policies/T1/policy.json": '{"course/T1": {"x": "' + "y" * 70_000 + '"}}'})
    refused(root, str(root / "policies/T1/policy.json"), "CLICKHOUSE_OUTBOX_OLX_MAX_FILE_BYTES")


def test_an_attribute_over_the_value_bound_is_refused(make_export, settings):
    settings.CLICKHOUSE_OUTBOX_OLX_MAX_VALUE_BYTES = 1024
    root = make_export({"chapter/ch.xml": f'<chapter display_name="{"é" * 600}"/>'})  # 1,200 bytes of UTF-8
    refused(root, str(root / "chapter/ch.xml"), "display_name", "CLICKHOUSE_OUTBOX_OLX_MAX_VALUE_BYTES")


def test_a_text_over_the_value_bound_is_refused(make_export, settings):
    settings.CLICKHOUSE_OUTBOX_OLX_MAX_VALUE_BYTES = 1024
    root = make_export({"chapter/ch.xml": f'<chapter><problem url_name="p">{"t" * 2000}</problem></chapter>'})
    refused(root, str(root / "chapter/ch.xml"), "text", "CLICKHOUSE_OUTBOX_OLX_MAX_VALUE_BYTES")


def test_values_under_the_bound_are_read(make_export, settings):
    settings.CLICKHOUSE_OUTBOX_OLX_MAX_VALUE_BYTES = 1024
    course = read_olx_export(make_export({"chapter/ch.xml": f'<chapter display_name="{"n" * 1024}"/>'}))
    assert len(course.blocks[course.blocks[course.root].children[0]].display_name) == 1024


def nested(depth, tag="vertical"):
    return f"<{tag}>" * depth + f"</{tag}>" * depth


def test_xml_nested_deeper_than_the_bound_is_refused(make_export, settings):
    settings.CLICKHOUSE_OUTBOX_OLX_MAX_DEPTH = 50
    root = make_export({"chapter/ch.xml": f"<chapter>{nested(60)}</chapter>"})
    refused(root, str(root / "chapter/ch.xml"), "nested deeper than 50", "CLICKHOUSE_OUTBOX_OLX_MAX_DEPTH")


def test_xml_nested_very_deep_is_an_error_not_a_recursion_error(make_export):
    # Inline verticals without url_name: their ids come from a recursive serialization.
    root = make_export({"chapter/ch.xml": f"<chapter>{nested(20_000)}</chapter>"})
    refused(root, str(root / "chapter/ch.xml"), "nested deeper than")


def test_xml_nested_within_the_bound_is_read(make_export, settings):
    settings.CLICKHOUSE_OUTBOX_OLX_MAX_DEPTH = 50
    course = read_olx_export(make_export({"chapter/ch.xml": f"<chapter>{nested(40)}</chapter>"}))
    assert len(course.blocks) == 2 + 40


@pytest.mark.parametrize("relpath", ["policies/T1/policy.json", "policies/T1/grading_policy.json"])
def test_json_nested_very_deep_is_an_error_not_a_recursion_error(make_export, relpath):
    root = make_export({relpath: '{"course/T1": ' + "[" * 100_000 + "]" * 100_000 + "}"})
    refused(root, str(root / relpath), "nested deeper than")


def test_json_nested_deeper_than_the_bound_is_refused(make_export, settings):
    settings.CLICKHOUSE_OUTBOX_OLX_MAX_DEPTH = 10
    root = make_export({"policies/T1/policy.json": '{"course/T1": {"x": ' + "[" * 20 + "]" * 20 + "}}"})
    refused(root, str(root / "policies/T1/policy.json"), "nested deeper than 10")


def test_an_export_with_more_files_than_the_bound_is_refused(make_export, settings):
    settings.CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_FILES = 3  # course.xml, course/T1.xml, chapter/ch.xml
    assert read_olx_export(make_export()).display_name == "Minimal"
    root = make_export({
        "chapter/ch.xml": '<chapter><html url_name="h"/></chapter>', "html/h.xml": "<html/>",
    })
    refused(root, str(root / "html/h.xml"), "more than 3 files", "CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_FILES")


def test_an_export_with_more_bytes_than_the_bound_is_refused(make_export, settings):
    size = sum(len(text.encode()) for text in MINIMAL.values())
    settings.CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_BYTES = size
    assert read_olx_export(make_export()).display_name == "Minimal"
    root = make_export({"chapter/ch.xml": '<chapter display_name="A longer name"/>'})
    refused(root, str(root / "chapter/ch.xml"), f"more than {size} bytes", "CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_BYTES")


def test_a_course_with_more_blocks_than_the_bound_is_refused(make_export, settings):
    settings.CLICKHOUSE_OUTBOX_OLX_MAX_BLOCKS = 100
    root = make_export({"chapter/ch.xml": "<chapter>" + "<html/>" * 200 + "</chapter>"})
    refused(root, str(root / "chapter/ch.xml"), "more than 100 blocks", "CLICKHOUSE_OUTBOX_OLX_MAX_BLOCKS")
