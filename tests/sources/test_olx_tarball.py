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


# -- bounds and links ----------------------------------------------------------------------

def refused_before_writing(tarball, dest, *fragments):
    dest.mkdir(exist_ok=True)
    with pytest.raises(OlxError) as caught:
        extract_tarball(tarball, dest)
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert list(dest.iterdir()) == []
    return str(caught.value)


def test_more_members_than_the_bound_are_refused(tmp_path, settings):
    settings.CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_FILES = 5
    tarball = tar_members(tmp_path / "many.tar.gz", [({"name": f"course/f{i}.txt"}, b"x") for i in range(8)])
    refused_before_writing(tarball, tmp_path / "dest", str(tarball), "'course/f5.txt'", "more than 5 files",
                           "CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_FILES")


def test_more_bytes_than_the_bound_are_refused(tmp_path, settings):
    settings.CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_BYTES = 1000
    tarball = tar_members(tmp_path / "big.tar.gz", [
        ({"name": "course/course.xml"}, b"<course/>"),
        ({"name": "course/static/a.bin"}, b"a" * 600),
        ({"name": "course/static/b.bin"}, b"b" * 600),
    ])
    refused_before_writing(tarball, tmp_path / "dest", "'course/static/b.bin'", "more than 1000 bytes",
                           "CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_BYTES")


def test_a_decompression_bomb_is_refused_without_being_written(tmp_path, settings):
    settings.CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_BYTES = 1024 * 1024
    bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz") as archive:
        info = tarfile.TarInfo("course/static/zeros.bin")
        info.size = 256 * 1024 * 1024
        archive.addfile(info, _Zeros(info.size))
    assert bomb.stat().st_size < 1024 * 1024
    refused_before_writing(bomb, tmp_path / "dest", "'course/static/zeros.bin'", "CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_BYTES")


class _Zeros:
    """A file object of `size` zero bytes, without holding them."""

    def __init__(self, size):
        self.left = size

    def read(self, n=-1):
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return bytes(n)


def test_links_to_files_inside_are_extracted_as_copies(tmp_path):
    tarball = tar_members(tmp_path / "links.tar.gz", [
        ({"name": "course/course.xml"}, b"<course/>"),
        ({"name": "course/html/real.xml"}, b"<html/>"),
        ({"name": "course/html/sym.xml", "type": tarfile.SYMTYPE, "linkname": "../html/real.xml"}, None),
        ({"name": "course/html/chain.xml", "type": tarfile.SYMTYPE, "linkname": "sym.xml"}, None),
        ({"name": "course/html/hard.xml", "type": tarfile.LNKTYPE, "linkname": "course/html/real.xml"}, None),
    ])
    folder = extract_tarball(tarball, tmp_path / "dest")
    for name in ("sym.xml", "chain.xml", "hard.xml"):
        path = folder / "html" / name
        assert not path.is_symlink() and path.read_bytes() == b"<html/>"


@pytest.mark.parametrize(("member", "fragment"), [
    ({"name": "course/html", "type": tarfile.SYMTYPE, "linkname": "."}, "link to a folder"),
    ({"name": "course/gone", "type": tarfile.SYMTYPE, "linkname": "missing.xml"}, "not a file of the archive"),
    ({"name": "course/loop", "type": tarfile.SYMTYPE, "linkname": "loop"}, "not a file of the archive"),
    ({"name": "course/up", "type": tarfile.SYMTYPE, "linkname": "../../course/course.xml"}, "escaping"),
    ({"name": "course/fifo", "type": tarfile.FIFOTYPE}, "not a regular file"),
])
def test_links_that_do_not_lead_to_a_file_inside_are_refused(tmp_path, member, fragment):
    name = member["name"]
    tarball = tar_members(tmp_path / "bad.tar.gz", [({"name": "course/course.xml"}, b"<course/>"), (member, None)])
    refused_before_writing(tarball, tmp_path / "dest", repr(name), fragment)
