"""
Nothing outside an export's folder is ever opened, listed or copied, whatever its names
(`url_name`, `:`, `..`, the course run) or its links say.

Each test plants a sentinel outside the export that a reader escaping its folder would
read, and checks that the read is refused and the sentinel never shows.
"""

import os
import threading

import pytest

from clickhouse_outbox.sources.olx import OlxError, OlxFolderSource, read_olx_export
from tests.sources.conftest import loc

SENTINEL = "SENTINEL-outside-the-export"


def read_refused(root, *fragments):
    """read_olx_export(root) raises an OlxError holding every fragment, and no sentinel."""
    with pytest.raises(OlxError) as caught:
        read_olx_export(root)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message
    assert SENTINEL not in message
    return message


@pytest.fixture
def outside(tmp_path):
    """A folder next to the exports holding files a confined reader never opens."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (tmp_path / "secret.xml").write_text(f'<html display_name="{SENTINEL}"/>')
    (folder / "secret.xml").write_text(f'<html display_name="{SENTINEL}"/>')
    return folder


def test_a_url_name_climbing_out_with_colons_is_refused(make_export, outside):
    root = make_export({"chapter/ch.xml": '<chapter><html url_name="..:..:secret"/></chapter>'})
    assert (root / "html/../../secret.xml").resolve().read_text().count(SENTINEL) == 1  # what it points at
    read_refused(root, str(root / "chapter/ch.xml"), "outside the export")


def test_a_url_name_through_a_sibling_folder_is_refused(make_export, outside):
    root = make_export({"chapter/ch.xml": '<chapter><html url_name="..:..:outside:secret"/></chapter>'})
    read_refused(root, "outside the export")


def test_a_course_run_climbing_out_is_refused(make_export, tmp_path, outside):
    (tmp_path / "secret.xml").write_text(f'<course display_name="{SENTINEL}"><chapter url_name="ch"/></course>')
    root = make_export({"course.xml": '<course url_name="..:..:secret" org="Org" course="C101"/>'})
    read_refused(root, str(root / "course.xml"), "outside the export")


def test_a_link_to_a_file_outside_is_refused(make_export, outside):
    root = make_export({"chapter/ch.xml": '<chapter><html url_name="h"/></chapter>'})
    (root / "html").mkdir()
    os.symlink(outside / "secret.xml", root / "html/h.xml")
    read_refused(root, str(root / "html/h.xml"), "outside the export")


def test_a_linked_policies_folder_outside_is_refused(make_export, outside):
    (outside / "T1").mkdir()
    (outside / "T1/policy.json").write_text(f'{{"course/T1": {{"display_name": "{SENTINEL}"}}}}')
    root = make_export()
    os.symlink(outside, root / "policies")
    read_refused(root, "policies", "outside the export")


def test_a_linked_tabs_folder_outside_is_not_listed(make_export, outside):
    # The names of the files outside would become static_tab block ids.
    (outside / "leaked_name.html").write_text("x")
    root = make_export()
    os.symlink(outside, root / "tabs")
    read_refused(root, str(root / "tabs"), "outside the export")


def test_a_linked_tab_file_outside_is_refused(make_export, outside):
    root = make_export({"tabs/ok.html": "<p/>"})
    os.symlink(outside / "secret.xml", root / "tabs/leak.html")
    read_refused(root, str(root / "tabs/leak.html"), "outside the export")


def test_a_linked_effort_outside_is_refused(make_export, outside):
    (outside / "effort.html").write_text(SENTINEL)
    root = make_export()
    (root / "about").mkdir()
    os.symlink(outside / "effort.html", root / "about/effort.html")
    read_refused(root, str(root / "about/effort.html"), "outside the export")


def test_a_link_to_a_device_is_refused(make_export):
    root = make_export({"chapter/ch.xml": '<chapter><html url_name="h"/></chapter>'})
    (root / "html").mkdir()
    os.symlink("/dev/zero", root / "html/h.xml")
    read_refused(root, str(root / "html/h.xml"))


def test_a_hard_link_is_refused(make_export, outside):
    # A hard link to a file outside is indistinguishable from a file of the export, but for its link count.
    root = make_export({"chapter/ch.xml": '<chapter><html url_name="h"/></chapter>'})
    (root / "html").mkdir()
    os.link(outside / "secret.xml", root / "html/h.xml")
    read_refused(root, str(root / "html/h.xml"), "2 hard links")
    with pytest.raises(OlxError, match="hard links"):
        OlxFolderSource(root=root.parent / "courses").add_export(root)


def test_links_that_stay_inside_are_followed(make_export):
    root = make_export({
        "chapter/ch.xml": '<chapter><html url_name="alias"/></chapter>',
        "html/real.xml": '<html display_name="Real"/>',
    })
    os.symlink("real.xml", root / "html/alias.xml")
    assert read_olx_export(root).blocks[loc("html", "alias")].display_name == "Real"


def test_a_named_pipe_is_refused_without_waiting_for_a_writer(make_export):
    root = make_export({"chapter/ch.xml": '<chapter><html url_name="h"/></chapter>'})
    (root / "html").mkdir()
    fifo = root / "html/h.xml"
    os.mkfifo(fifo)
    outcome = {}

    def read():
        try:
            read_olx_export(root)
        except Exception as exc:  # noqa: BLE001 (the test inspects whatever was raised)
            outcome["error"] = exc

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=20)
    if reader.is_alive():  # blocked in open(): release it so the thread ends
        with open(fifo, "w", encoding="utf-8"):
            pass
        reader.join(timeout=20)
        pytest.fail("the reader blocked opening a named pipe")
    assert isinstance(outcome.get("error"), OlxError)
    assert "not a regular file" in str(outcome["error"])


def test_adding_a_folder_copies_nothing_from_outside(make_export, outside, tmp_path):
    (outside / "private.txt").write_text(SENTINEL)
    root = make_export({"static/handout.pdf": "pdf"})
    os.symlink(outside / "private.txt", root / "static/leak.txt")
    source = OlxFolderSource(root=tmp_path / "courses")
    with pytest.raises(OlxError, match="outside the export") as caught:
        source.add_export(root)
    assert str(root / "static/leak.txt") in str(caught.value)
    assert source.course_keys() == []
    stored = [path for path in (tmp_path / "courses").rglob("*") if path.is_file()]
    assert not any(SENTINEL in path.read_text(errors="replace") for path in stored)


def test_adding_a_folder_with_a_link_inside_copies_the_file(make_export, tmp_path):
    root = make_export({
        "chapter/ch.xml": '<chapter><html url_name="alias"/></chapter>',
        "html/real.xml": '<html display_name="Real"/>',
    })
    os.symlink("real.xml", root / "html/alias.xml")
    source = OlxFolderSource(root=tmp_path / "courses")
    key = source.add_export(root)
    assert source.get_course(key).blocks[loc("html", "alias")].display_name == "Real"
    stored = next((tmp_path / "courses").iterdir())
    assert not (stored / "html/alias.xml").is_symlink()  # a copy: the stored course has no links


def test_adding_a_folder_with_a_folder_link_is_refused(make_export, tmp_path):
    root = make_export()
    os.symlink("..", root / "chapter/loop")  # copytree would copy the export into itself forever
    with pytest.raises(OlxError, match="link to a folder") as caught:
        OlxFolderSource(root=tmp_path / "courses").add_export(root)
    assert str(root / "chapter/loop") in str(caught.value)


def test_adding_a_folder_counts_its_folders_and_files(make_export, tmp_path, settings):
    settings.CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_FILES = 20
    root = make_export()
    for n in range(30):
        (root / "static" / f"empty{n:02}").mkdir(parents=True)
    with pytest.raises(OlxError, match=r"more than 20 files \(CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_FILES\)"):
        OlxFolderSource(root=tmp_path / "courses").add_export(root)
    assert not any((tmp_path / "courses").iterdir())  # the staging copy is gone
