"""
An export folder's files, opened only inside it.

A name in an export (a pointer's `url_name`, the course run, a policy path) becomes a path;
so does every link the folder holds. Each path is resolved (`os.path.realpath`, which follows
the links) and must stay under the export's own resolved root, else it is refused before it is
opened. Only regular files are opened (never a device, a pipe or a socket: a pipe would block
the reader), and none with several hard links (its other names may be outside), each up to
CLICKHOUSE_OUTBOX_OLX_MAX_FILE_BYTES, and the export's files and bytes are counted against
their bounds. Copying a folder export follows the same rules.
"""

import errno
import os
import stat

from clickhouse_outbox.sources.olx.errors import OlxError
from clickhouse_outbox.sources.olx.limits import Budget

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # O_NONBLOCK: a pipe opens at once
_CHUNK = 1024 * 1024


def inside(path, root):
    """Whether the resolved `path` is `root` or under it (both resolved, absolute)."""
    return path == root or os.path.commonpath([path, root]) == root


class ExportFiles:
    """
    The files of one export folder `root`, read within `limits`. Messages name a file as
    `shown_as` (default: the folder) followed by its path in the export.
    """

    def __init__(self, root, limits, shown_as=None):
        self.root = os.fspath(root)
        self.limits = limits
        self.budget = Budget(limits)
        self._real_root = os.path.realpath(self.root)
        self._folders = {}  # relative folder -> its real path, checked inside the export
        shown = os.fspath(shown_as if shown_as is not None else self.root)
        self._prefix = shown if shown.endswith((":", "/")) else f"{shown}/"

    def show(self, relpath):
        """The file as messages name it, control characters escaped (a message is one line)."""
        text = f"{self._prefix}{relpath}"
        return text if text.isprintable() else text.encode("unicode_escape", "backslashreplace").decode("ascii")

    def resolve(self, relpath, pointed_from=None):
        """The real path of `relpath`, or OlxError when it leads outside the export."""
        try:
            real = os.path.realpath(os.path.join(self.root, relpath))
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
            raise OlxError(f"{self.show(relpath)}{self._origin(pointed_from)}: not a usable file name ({exc})") from None
        if not inside(real, self._real_root):
            raise OlxError(f"{self.show(relpath)}{self._origin(pointed_from)}: leads outside the export folder; refused")
        return real

    def _resolve_for_open(self, relpath, pointed_from=None):
        """
        `resolve`, with each folder resolved once per export (a course reads thousands of files
        from a dozen folders): the folder's real path joined with a plain last name, which
        the open then refuses to follow if it is a link (`_open` resolves such a file in full).
        """
        folder, name = os.path.split(relpath)
        if name in ("", ".", ".."):
            return self.resolve(relpath, pointed_from)
        real_folder = self._folders.get(folder)
        if real_folder is None:
            real_folder = self._folders[folder] = self.resolve(folder or ".", pointed_from)
        return os.path.join(real_folder, name)

    def _origin(self, pointed_from):
        return f" (pointed to by {self.show(pointed_from)})" if pointed_from else ""

    def read(self, relpath, *, pointed_from=None, missing_ok=False):
        """The bytes of a regular file of the export (None if missing and `missing_ok`)."""
        fd = self._open(relpath, pointed_from=pointed_from, missing_ok=missing_ok)
        if fd is None:
            return None
        try:
            size = self._check_regular(relpath, fd)
            if size > self.limits.file_bytes:
                raise OlxError(
                    f"{self.show(relpath)}: {size} bytes, over the {self.limits.file_bytes}-byte bound "
                    "(CLICKHOUSE_OUTBOX_OLX_MAX_FILE_BYTES)"
                )
            self._spend(relpath, size)
            chunks, left = [], size + 1  # one byte more: a file that grew is noticed
            while left > 0:
                chunk = os.read(fd, min(left, _CHUNK))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        except OSError as exc:
            raise OlxError(f"{self.show(relpath)}: unreadable ({exc.strerror})") from None
        finally:
            os.close(fd)
        data = b"".join(chunks)
        if len(data) != size:
            raise OlxError(f"{self.show(relpath)}: changed while it was read")
        return data

    def read_text(self, relpath, *, missing_ok=False):
        """A UTF-8 text file of the export (None if missing and `missing_ok`)."""
        data = self.read(relpath, missing_ok=missing_ok)
        if data is None:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise OlxError(f"{self.show(relpath)}: unreadable ({exc})") from None

    def file_names(self, folder):
        """
        The names of the regular files in `folder` (a link counts when it leads to a regular
        file inside the export; one leading outside is refused). No folder: no names.
        """
        real = self.resolve(folder)
        names = []
        try:
            with os.scandir(real) as entries:
                for count, entry in enumerate(entries, 1):
                    if count > self.limits.export_files:
                        raise OlxError(
                            f"{self.show(folder)}: more than {self.limits.export_files} files "
                            "(CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_FILES)"
                        )
                    if entry.is_symlink():
                        target = self.resolve(f"{folder}/{entry.name}")
                        if os.path.isfile(target):
                            names.append(entry.name)
                    elif entry.is_file(follow_symlinks=False):
                        names.append(entry.name)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise OlxError(f"{self.show(folder)}: unreadable ({exc.strerror})") from None
        return names

    def copy_to(self, dest):
        """
        Copy the export into the new folder `dest`: folders and regular files; a link to a
        file inside the export becomes a copy of the file; a link to a folder (which could
        loop), a link leading outside, a device, a pipe or a socket is refused.
        """
        os.mkdir(dest)
        folders = [""]
        while folders:
            folder = folders.pop()
            entries = []
            try:
                with os.scandir(os.path.join(self.root, folder)) as scan:
                    for entry in scan:
                        entries.append(entry)
                        if len(entries) > self.limits.export_files:
                            raise OlxError(f"{self.show(folder)}: more than {self.limits.export_files} files "
                                           "(CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_FILES)")
            except OSError as exc:
                raise OlxError(f"{self.show(folder)}: unreadable ({exc.strerror})") from None
            for entry in sorted(entries, key=lambda entry: entry.name):
                relpath = f"{folder}{entry.name}"
                if entry.is_symlink():
                    if os.path.isdir(self.resolve(relpath)):
                        raise OlxError(f"{self.show(relpath)}: a link to a folder; copy the folder itself instead")
                    self._copy_file(relpath, os.path.join(dest, relpath))
                elif entry.is_dir(follow_symlinks=False):
                    self._spend(relpath, 0)  # folders count as files: an export of empty folders is bounded too
                    os.mkdir(os.path.join(dest, relpath))
                    folders.append(f"{relpath}/")
                elif entry.is_file(follow_symlinks=False):
                    self._copy_file(relpath, os.path.join(dest, relpath))
                else:
                    raise OlxError(f"{self.show(relpath)}: not a regular file or folder (a device, pipe or socket)")

    # -- helpers -------------------------------------------------------------------------

    def _open(self, relpath, *, pointed_from=None, missing_ok=False):
        try:
            try:
                return os.open(self._resolve_for_open(relpath, pointed_from), _OPEN_FLAGS)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
            # The file itself is a link: resolved in full, and opened only if it stays inside.
            return os.open(self.resolve(relpath, pointed_from), _OPEN_FLAGS)
        except FileNotFoundError:
            if missing_ok:
                return None
            raise OlxError(f"{self.show(relpath)}: missing{self._origin(pointed_from)}") from None
        except OSError as exc:
            raise OlxError(f"{self.show(relpath)}: unreadable ({exc.strerror})") from None
        except ValueError as exc:  # a NUL in the name
            raise OlxError(f"{self.show(relpath)}: not a usable file name ({exc})") from None

    def _check_regular(self, relpath, fd):
        """The size of the open file, which must be a regular file with no other name."""
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise OlxError(f"{self.show(relpath)}: not a regular file")
        if status.st_nlink > 1:
            # A hard link looks like any file, but its other name may be outside the export.
            raise OlxError(f"{self.show(relpath)}: a file with {status.st_nlink} hard links (its other names may "
                           "be outside the export); copy the export without hard links (cp -r)")
        return status.st_size

    def _spend(self, relpath, size):
        reason = self.budget.spend(size)
        if reason:
            raise OlxError(f"{self.show(relpath)}: the export holds {reason}")

    def _copy_file(self, relpath, target):
        with os.fdopen(self._open(relpath), "rb") as source:
            size = self._check_regular(relpath, source.fileno())
            self._spend(relpath, size)
            with open(target, "xb") as copy:
                left = size
                while left:
                    chunk = source.read(min(left, _CHUNK))
                    if not chunk:
                        break
                    copy.write(chunk)
                    left -= len(chunk)
            if left or source.read(1):
                raise OlxError(f"{self.show(relpath)}: changed while it was copied")
