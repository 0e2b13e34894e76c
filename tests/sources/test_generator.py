"""The synthetic course generator: exact sizes, determinism, and exports that read back the same."""

import tarfile
import time
from collections import Counter

import pytest

from clickhouse_outbox.sources.olx import read_olx_export
from clickhouse_outbox.testing.generator import generate_published_course, write_course_export
from tests.sources.conftest import preorder


@pytest.mark.parametrize("blocks", [1, 2, 3, 4, 5, 17, 1000])
def test_tree_block_count_is_exact(blocks):
    course = generate_published_course(blocks)
    assert len(course.blocks) == blocks
    assert len(preorder(course)) == blocks  # every block is reachable from the root
    assert sum(len(b.children) for b in course.blocks.values()) == blocks - 1
    assert [(b.block_type, b.location.rsplit("@", 1)[1]) for b in course.detached] == [
        ("about", "overview"), ("course_info", "updates"),
    ]


def test_shape():
    course = generate_published_course(1000, seed=3)
    types = Counter(b.block_type for b in course.blocks.values())
    assert set(types) == {"course", "chapter", "sequential", "vertical", "html", "problem", "video"}
    allowed = {"course": {"chapter"}, "chapter": {"sequential"}, "sequential": {"vertical"},
               "vertical": {"html", "problem", "video"}}
    for b in course.blocks.values():
        assert {course.blocks[c].block_type for c in b.children} <= allowed.get(b.block_type, set())
    sequentials = [b for b in course.blocks.values() if b.block_type == "sequential"]
    assert 0 < sum(b.graded for b in sequentials) < len(sequentials)
    for seq in sequentials:  # graded is inherited below a graded sequential
        for vertical in seq.children:
            assert course.blocks[vertical].graded == seq.graded
    videos = [b for b in course.blocks.values() if b.block_type == "video"]
    assert videos and all(b.fields["video_end_time"] > b.fields["video_start_time"] for b in videos)


def test_deterministic_for_a_seed():
    assert generate_published_course(300, seed=7) == generate_published_course(300, seed=7)
    assert generate_published_course(300, seed=7) != generate_published_course(300, seed=8)


def test_blocks_must_count_the_course():
    with pytest.raises(ValueError):
        generate_published_course(0)


@pytest.mark.parametrize("blocks", [1, 5, 250])
def test_export_reads_back_as_the_in_memory_course(tmp_path, blocks):
    path = write_course_export(tmp_path, blocks=blocks, org="O", course="C", run="R", seed=blocks)
    assert path == tmp_path / "O-C-R"
    course = read_olx_export(path)
    assert len(course.blocks) == blocks
    assert course == generate_published_course(blocks, org="O", course="C", run="R", seed=blocks)


def test_tarball_export_is_laid_out_like_studio(tmp_path):
    path = write_course_export(tmp_path, blocks=120, tarball=True)
    assert path == tmp_path / "GenX-Gen101-R1.tar.gz"
    with tarfile.open(path) as archive:
        assert {name.split("/")[0] for name in archive.getnames()} == {"course"}
        names = set(archive.getnames())
    assert {"course/course.xml", "course/course/R1.xml", "course/policies/R1/policy.json"} <= names
    assert any(n.startswith("course/html/") and n.endswith(".html") for n in names)
    assert read_olx_export(path) == generate_published_course(120)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary folder left


def test_existing_exports_are_not_overwritten(tmp_path):
    write_course_export(tmp_path, blocks=3)
    with pytest.raises(FileExistsError):
        write_course_export(tmp_path, blocks=3)


def test_a_thousand_block_export_reads_quickly(tmp_path):
    path = write_course_export(tmp_path, blocks=1000)
    read_olx_export(path)  # warm the file cache
    started = time.perf_counter()
    read_olx_export(path)
    # Tens of milliseconds on a laptop; the bound only catches an accidental quadratic walk.
    assert time.perf_counter() - started < 1.0
