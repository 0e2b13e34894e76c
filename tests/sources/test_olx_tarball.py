"""Exports as .tar.gz files: the same course as the folder, and nothing written outside."""

import tarfile

import pytest

from clickhouse_outbox.sources.olx import SAMPLE_COURSE_DIR, OlxError, extract_tarball, read_olx_export
from tests.sources.conftest import tar_members


def make_tarball(path, folder, top="course"):
    with tarfile.open(path, "w:gz") as archive:
        archive.add(folder, arcname=top)
    return path


def test_tarball_reads_like_the_folder(tmp_path):
    tarball = make_tarball(tmp_path / "course.tar.gz", SAMPLE_COURSE_DIR)
    assert read_olx_export(tarball) == read_olx_export(SAMPLE_COURSE_DIR)


def test_any_single_top_folder_is_accepted(tmp_path):
    tarball = make_tarball(tmp_path / "x.tgz", SAMPLE_COURSE_DIR, top="my-export")
    assert read_olx_export(tarball) == read_olx_export(SAMPLE_COURSE_DIR)


def test_files_at_the_top_are_accepted(tmp_path):
    with tarfile.open(tmp_path / "flat.tar.gz", "w:gz") as archive:
        for path in SAMPLE_COURSE_DIR.iterdir():
            archive.add(path, arcname=f"./{path.name}")
    assert read_olx_export(tmp_path / "flat.tar.gz") == read_olx_export(SAMPLE_COURSE_DIR)


def test_two_top_folders_are_refused(tmp_path):
    tarball = tar_members(tmp_path / "two.tar.gz", [
        ({"name": "a/course.xml"}, b"<course/>"),
        ({"name": "b/course.xml"}, b"<course/>"),
    ])
    with pytest.raises(OlxError, match=r"expected one top folder.*\['a', 'b'\]"):
        read_olx_export(tarball)


@pytest.mark.parametrize("member", [
    {"name": "../evil.txt"},
    {"name": "course/../../evil.txt"},
    {"name": "/tmp/evil.txt"},
    {"name": "course/link", "type": tarfile.SYMTYPE, "linkname": "../../evil.txt"},
    {"name": "course/link", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"},
    {"name": "course/hard", "type": tarfile.LNKTYPE, "linkname": "../evil.txt"},
    {"name": "course/dev", "type": tarfile.CHRTYPE},
])
def test_members_escaping_the_folder_are_refused(tmp_path, member):
    dest = tmp_path / "dest"
    dest.mkdir()
    data = b"x" if member.get("type", tarfile.REGTYPE) == tarfile.REGTYPE else None
    name = member["name"]
    tarball = tar_members(tmp_path / "evil.tar.gz", [({"name": "course/course.xml"}, b"<course/>"), (member, data)])
    with pytest.raises(OlxError) as caught:
        extract_tarball(tarball, dest)
    assert repr(name) in str(caught.value) and str(tarball) in str(caught.value)
    # Refused before anything was written.
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()
    with pytest.raises(OlxError):
        read_olx_export(tarball)


def test_a_broken_tarball_is_an_olx_error(tmp_path):
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(make_tarball(tmp_path / "ok.tar.gz", SAMPLE_COURSE_DIR).read_bytes()[:500])
    with pytest.raises(OlxError, match="broken.tar.gz"):
        read_olx_export(broken)
