"""Small OLX exports written on the fly, for the reader's rules and failures."""

import io
import tarfile

import pytest

#: The least a valid export holds: course.xml, the course block and one chapter.
MINIMAL = {
    "course.xml": '<course url_name="T1" org="Org" course="C101"/>',
    "course/T1.xml": '<course display_name="Minimal"><chapter url_name="ch"/></course>',
    "chapter/ch.xml": '<chapter display_name="Chapter"/>',
}

PREFIX = "block-v1:Org+C101+T1"


def loc(block_type, block_id):
    """A location in the minimal course."""
    return f"{PREFIX}+type@{block_type}+block@{block_id}"


def preorder(course):
    """(type, id) of every tree block, walking `children` from the root, depth-first pre-order."""
    out, stack = [], [course.root]
    while stack:
        block = course.blocks[stack.pop()]
        out.append((block.block_type, block.location.rsplit("@", 1)[1]))
        stack.extend(reversed(block.children))
    return out


@pytest.fixture
def make_export(tmp_path):
    """make_export({relpath: text or None}) -> folder: MINIMAL overlaid with the files (None removes one)."""
    counter = iter(range(1_000_000))

    def make(files=None, base=MINIMAL):
        root = tmp_path / f"export{next(counter)}"
        merged = {**base, **(files or {})}
        for relpath, text in merged.items():
            if text is None:
                continue
            path = root / relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return root

    return make


def tar_members(path, members):
    """Write a .tar.gz from (TarInfo kwargs, bytes or None) pairs, for archives tarfile.add would not make."""
    with tarfile.open(path, "w:gz") as archive:
        for info_kwargs, data in members:
            info = tarfile.TarInfo(info_kwargs.pop("name"))
            for attr, value in info_kwargs.items():
                setattr(info, attr, value)
            if data is not None:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            else:
                archive.addfile(info)
    return path
