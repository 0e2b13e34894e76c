"""
Export tarballs (`.tar.gz`, also bzip2, xz or plain tar) extracted without trusting them.

Two passes over the archive, each reading it as a stream with its decompressed size bounded:
the first checks every member before anything is written (names that are absolute or climb
with `..`, devices, pipes, the bounds on members and bytes), the second writes regular files
and folders only. A link (symbolic or hard) is written as a copy of the file it leads to, and
only when it leads to a regular file of the archive: no link is ever created on disk, so no
later member can be written through one (the bypasses of tarfile's own filters, CVE-2025-4517
and its kin, all go through links on disk).
"""

import bz2
import gzip
import lzma
import os
import shutil
import tarfile
import zlib
from contextlib import ExitStack, contextmanager
from pathlib import Path

from clickhouse_outbox.sources.olx.errors import OlxError
from clickhouse_outbox.sources.olx.limits import Limits

_DECOMPRESSORS = (
    (b"\x1f\x8b", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")),
    (b"BZh", bz2.BZ2File),
    (b"\xfd7zXZ\x00", lzma.LZMAFile),
)
#: Room for each member's headers (a block, long-name or pax records, padding) in the stream's bound.
_HEADER_ROOM = 8 * 1024
_LINK_HOPS = 32
_CHUNK = 1024 * 1024
_READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError)  # EOFError: a truncated .gz


def extract_tarball(path, dest, limits=None) -> Path:
    """
    Extract an export tarball into the new or empty folder `dest` and return the export's
    folder (`dest`, or its single top folder). Anything refused raises OlxError naming the
    member, before anything is written.
    """
    path, dest = Path(path), Path(dest)
    limits = limits or Limits.from_settings()
    try:
        plan = _check(path, limits)
    except _READ_ERRORS as exc:
        raise OlxError(f"{path}: not a readable .tar.gz export ({exc})") from None
    dest.mkdir(parents=True, exist_ok=True)
    try:
        _extract(path, dest, plan, limits)
    except _READ_ERRORS as exc:
        raise OlxError(f"{path}: could not be extracted ({exc})") from None
    tops = plan.tops
    if "" in tops or (dest / "course.xml").is_file():
        return dest
    if len(tops) == 1:
        return dest / tops.pop()
    raise OlxError(f"{path}: expected one top folder holding course.xml, found {sorted(tops) or 'nothing'}")


class _Plan:
    """What the first pass found: each path's kind, the files' sizes, the links' targets, the top names."""

    def __init__(self):
        self.kinds = {}  # parts -> "file" | "dir" | "link"
        self.sizes = {}  # a file's parts -> its size
        self.link_to = {}  # a link's parts -> (its target's parts, the member's name)
        self.copies = []  # (a link's parts, the parts of the file it leads to)
        self.tops = set()


def _check(path, limits):
    plan = _Plan()
    total = 0  # every regular member's bytes: each is written, even one a later member replaces
    with _members(path, limits) as archive:
        for count, member in enumerate(archive, 1):
            name = member.name
            if count > limits.export_files:
                raise _refused(path, name, f"is one too many: more than {limits.export_files} files "
                                           "(CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_FILES)")
            parts = _parts(path, name, name, "path")
            if not parts:
                continue  # the archive's own top folder, "./"
            for depth in range(1, len(parts)):
                plan.kinds.setdefault(parts[:depth], "dir")  # folders the tar lists only through their files
            plan.kinds[parts] = _kind(path, member)
            if member.isreg():
                plan.sizes[parts] = member.size
                total += member.size
                _check_total(path, name, total, limits)  # from the header, before the data is read
            elif member.issym() or member.islnk():
                base = parts[:-1] if member.issym() else ()  # a hard link names a path of the archive
                plan.link_to[parts] = (_parts(path, name, member.linkname, "link", base), name)
            if not parts[0].startswith("."):  # ignore ._* / .DS_Store litter from macOS tar
                plan.tops.add(parts[0] if len(parts) > 1 or member.isdir() else "")
    for parts, (_target, name) in plan.link_to.items():
        if plan.kinds[parts] == "link":  # not replaced by a later member of the same name
            file = _follow(path, plan, parts, name)
            plan.copies.append((parts, file))
            total += plan.sizes[file]  # a link is written as a copy of its file
            _check_total(path, name, total, limits)
    return plan


def _kind(path, member):
    if member.isreg():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym() or member.islnk():
        return "link"
    raise _refused(path, member.name, "is not a regular file, folder or link (a device or a pipe)")


def _check_total(path, name, total, limits):
    if total > limits.export_bytes:
        raise _refused(path, name, f"takes the export to more than {limits.export_bytes} bytes "
                                   "(CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_BYTES)")


def _follow(path, plan, parts, name):
    """The regular file a link leads to, through other links of the archive, or OlxError."""
    seen = {parts}
    target = plan.link_to[parts][0]
    for _ in range(_LINK_HOPS):
        kind = plan.kinds.get(target)
        if kind == "file":
            return target
        if kind == "dir":
            raise _refused(path, name, "is a link to a folder; only links to files are extracted")
        if kind != "link" or target in seen:
            break
        seen.add(target)
        target = plan.link_to[target][0]
    raise _refused(path, name, "is a link to something that is not a file of the archive")


def _extract(path, dest, plan, limits):
    written = 0
    with _members(path, limits) as archive:
        for member in archive:
            parts = _parts(path, member.name, member.name, "path")
            if not parts or plan.kinds.get(parts) not in ("file", "dir"):
                continue
            target = os.path.join(dest, *parts)
            if member.isdir():
                os.makedirs(target, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            source = archive.extractfile(member)
            # O_NOFOLLOW: nothing in `dest` is a link (none is ever made), and stays so.
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            with os.fdopen(fd, "wb") as out:
                left = member.size
                while left:
                    chunk = source.read(min(left, _CHUNK))
                    if not chunk:
                        raise OlxError(f"{path}: member {member.name!r} is truncated")
                    out.write(chunk)
                    left -= len(chunk)
            written += member.size
    for link, file in plan.copies:
        target = os.path.join(dest, *link)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(dest, *file), target, follow_symlinks=False)


def _parts(path, name, value, what, base=()):
    """
    The normalized parts of a member's path (or link target, from `base`), refusing an
    absolute path and a `..` that climbs out of the archive. `\\` counts as a separator.
    """
    posix = value.replace("\\", "/")
    if posix.startswith("/") or (len(value) > 1 and value[1] == ":"):
        raise _refused(path, name, f"has a {what} escaping the extraction folder ({value!r})")
    parts = list(base)
    for part in posix.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise _refused(path, name, f"has a {what} escaping the extraction folder ({value!r})")
            parts.pop()
        else:
            parts.append(part)
    return tuple(parts)


def _refused(path, name, why):
    return OlxError(f"{path}: member {name!r} {why}")


@contextmanager
def _members(path, limits):
    """The archive read as a stream (members in order), its decompressed bytes bounded."""
    with ExitStack() as stack:
        raw = stack.enter_context(open(path, "rb"))
        magic = raw.read(6)
        raw.seek(0)
        opener = next((opener for prefix, opener in _DECOMPRESSORS if magic.startswith(prefix)), None)
        stream = stack.enter_context(opener(raw)) if opener else raw
        bound = limits.export_bytes + limits.export_files * _HEADER_ROOM + _CHUNK
        with tarfile.open(fileobj=_Bounded(stream, bound, path), mode="r|") as archive:
            yield archive


class _Bounded:
    """A read-only stream that raises OlxError once more than `limit` bytes were read from it."""

    def __init__(self, stream, limit, path):
        self._stream, self._left, self._path, self._limit = stream, limit, path, limit

    def read(self, size=-1):
        data = self._stream.read(self._left + 1 if size is None or size < 0 else min(size, self._left + 1))
        self._left -= len(data)
        if self._left < 0:
            raise OlxError(f"{self._path}: more than {self._limit} bytes once decompressed "
                           "(CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_BYTES, with room for the headers)")
        return data
