"""OlxFolderSource: the standalone project's folder of course exports."""

import shutil
import tarfile

import pytest
from opaque_keys.edx.keys import CourseKey

from clickhouse_outbox.sources.base import CourseNotFound, CourseSourceError
from clickhouse_outbox.sources.olx import SAMPLE_COURSE_DIR, OlxError, OlxFolderSource, folder_name, read_olx_export

SAMPLE_KEY = CourseKey.from_string("course-v1:OpenedX+DemoX+2026_T1")
MINIMAL_KEY = CourseKey.from_string("course-v1:Org+C101+T1")


@pytest.fixture
def source(tmp_path):
    return OlxFolderSource(root=tmp_path / "olx")


def visible_and_hidden(root):
    return sorted(p.name for p in root.iterdir())


def test_add_then_get_and_list(source):
    assert source.course_keys() == []  # the folder does not exist yet
    assert source.add_export(SAMPLE_COURSE_DIR) == SAMPLE_KEY
    assert source.course_keys() == [SAMPLE_KEY]
    assert visible_and_hidden(source.root) == ["course-v1%3AOpenedX+DemoX+2026_T1"]
    expected = read_olx_export(SAMPLE_COURSE_DIR)
    assert source.get_course(SAMPLE_KEY) == expected
    assert source.get_course(str(SAMPLE_KEY)) == expected


def test_keys_are_sorted_and_folder_names_reversible(source, make_export):
    source.add_export(make_export())
    source.add_export(SAMPLE_COURSE_DIR)
    assert source.course_keys() == [SAMPLE_KEY, MINIMAL_KEY]  # "course-v1:Op..." < "course-v1:Or..."
    # Distinct keys that a naive ':'/'+' -> '_' mapping would merge stay apart.
    assert folder_name("course-v1:a+b_c+d") != folder_name("course-v1:a_b+c+d")


def test_unknown_and_invalid_keys(source):
    source.add_export(SAMPLE_COURSE_DIR)
    with pytest.raises(CourseNotFound, match="course-v1:OpenedX\\+DemoX\\+2099"):
        source.get_course("course-v1:OpenedX+DemoX+2099")
    with pytest.raises(CourseNotFound, match="not a course key"):
        source.get_course("not a key")


def test_tarball_export(source, tmp_path):
    tarball = tmp_path / "course.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(SAMPLE_COURSE_DIR, arcname="course")
    assert source.add_export(tarball) == SAMPLE_KEY
    assert source.get_course(SAMPLE_KEY) == read_olx_export(SAMPLE_COURSE_DIR)


def test_adding_again_replaces_the_course(source, make_export):
    source.add_export(make_export())
    newer = make_export({"course/T1.xml": '<course display_name="Renamed"><chapter url_name="ch"/></course>'})
    assert source.add_export(newer) == MINIMAL_KEY
    assert source.get_course(MINIMAL_KEY).display_name == "Renamed"
    assert visible_and_hidden(source.root) == [folder_name(MINIMAL_KEY)]  # no staging or old copies left


def test_a_broken_export_changes_nothing(source, make_export):
    source.add_export(make_export())
    broken = make_export({"course/T1.xml": '<course display_name="Broken"><chapter url_name="ch"/>'})
    with pytest.raises(OlxError):
        source.add_export(broken)
    assert source.get_course(MINIMAL_KEY).display_name == "Minimal"
    assert visible_and_hidden(source.root) == [folder_name(MINIMAL_KEY)]


def test_the_copy_does_not_depend_on_the_original(source, tmp_path):
    original = tmp_path / "original"
    shutil.copytree(SAMPLE_COURSE_DIR, original)
    source.add_export(original)
    shutil.rmtree(original)
    assert source.get_course(SAMPLE_KEY) == read_olx_export(SAMPLE_COURSE_DIR)


def test_hidden_and_foreign_folders_are_ignored(source):
    source.add_export(SAMPLE_COURSE_DIR)
    (source.root / ".incoming-leftover").mkdir()
    (source.root / "notes").mkdir()
    (source.root / "README").write_text("hi")
    assert source.course_keys() == [SAMPLE_KEY]


def test_a_folder_holding_another_course_is_an_error(source, make_export):
    source.root.mkdir(parents=True)
    shutil.copytree(make_export(), source.root / folder_name(SAMPLE_KEY))
    with pytest.raises(CourseSourceError, match="holds course-v1:Org\\+C101\\+T1"):
        source.get_course(SAMPLE_KEY)


def test_root_comes_from_the_setting_at_call_time(settings, tmp_path):
    source = OlxFolderSource()
    settings.CLICKHOUSE_OUTBOX_OLX_DIR = ""
    with pytest.raises(CourseSourceError, match="CLICKHOUSE_OUTBOX_OLX_DIR"):
        source.course_keys()
    settings.CLICKHOUSE_OUTBOX_OLX_DIR = str(tmp_path / "from-settings")
    source.add_export(SAMPLE_COURSE_DIR)
    assert (tmp_path / "from-settings" / folder_name(SAMPLE_KEY) / "course.xml").is_file()
    assert source.course_keys() == [SAMPLE_KEY]
