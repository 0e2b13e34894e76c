"""
The standalone project's course source: a folder holding one OLX export per course, named
by the course key, filled by `outbox_load_olx` (`OlxFolderSource.add_export`).
"""

import logging
import os
import shutil
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote

from clickhouse_outbox import conf
from clickhouse_outbox.sources.base import CourseNotFound, CourseSource, CourseSourceError, PublishedCourse, source_course_key
from clickhouse_outbox.sources.keys import NotACourseKey, parse_course_key
from clickhouse_outbox.sources.olx.errors import OlxError
from clickhouse_outbox.sources.olx.files import ExportFiles
from clickhouse_outbox.sources.olx.limits import Limits
from clickhouse_outbox.sources.olx.reader import read_export_folder, shown_in_tarball
from clickhouse_outbox.sources.olx.tarball import extract_tarball

log = logging.getLogger(__name__)


def folder_name(course_key) -> str:
    """The folder of a course: its key, percent-encoded where a filesystem might object (reversible)."""
    return quote(str(course_key), safe="+-_.~")


class OlxFolderSource(CourseSource):
    """
    The course source of the standalone project: one folder per course under `root`
    (default: the CLICKHOUSE_OUTBOX_OLX_DIR setting, read at call time), named by
    `folder_name(course_key)` and filled by `add_export`. Folders starting with "." are
    work in progress and ignored. Every read is confined to the course's folder and bounded
    by the CLICKHOUSE_OUTBOX_OLX_MAX_* settings.
    """

    def __init__(self, root=None):
        self._root = root

    @property
    def root(self) -> Path:
        root = self._root if self._root is not None else conf.olx_dir()
        if not root:
            raise CourseSourceError("No OLX folder: set CLICKHOUSE_OUTBOX_OLX_DIR")
        return Path(root)

    def get_course(self, course_key) -> PublishedCourse:
        key = source_course_key(course_key)
        folder = self.root / folder_name(key)
        if not (folder / "course.xml").is_file():
            raise CourseNotFound(f"{key}: no OLX export in {self.root}")
        course = read_export_folder(folder, Limits.from_settings())
        if course.course_key != key:
            raise CourseSourceError(f"{folder}: holds {course.course_key}, not {key}")
        return course

    def course_keys(self):
        return sorted(self._course_folders(), key=str)

    def course_keys_changed_since(self, since):
        """Courses whose export was added (or replaced) at or after `since`: the folder's time."""
        cutoff = since.timestamp()
        return sorted((key for key, mtime in self._course_folders().items() if mtime >= cutoff), key=str)

    def published_times(self, course_keys):
        """When each course's export was put in place (the folder's time): an export replaced is a new publish."""
        folders = {str(key): mtime for key, mtime in self._course_folders().items()}
        return {str(key): datetime.fromtimestamp(folders[str(key)], tz=UTC) for key in course_keys
                if str(key) in folders}

    def _course_folders(self):
        """{course key: when its export was put in place (a POSIX time)}."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return {}
        keys = {}
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            try:
                keys[parse_course_key(unquote(entry.name))] = entry.stat().st_mtime
            except NotACourseKey:
                log.debug("Skipping %s: not a course folder", entry.path)
        return keys

    def add_export(self, path) -> object:
        """
        Add (or replace) a course from an export folder or `.tar.gz`; returns its CourseKey.

        The export is copied (a folder) or extracted (a tarball) into a hidden staging folder
        next to its destination, confined and bounded, then read there, so what is read is
        what is kept; a broken or hostile export raises OlxError and changes nothing. Then it
        is renamed into place.
        """
        path = Path(path)
        limits = Limits.from_settings()
        root = self.root
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=root))
        try:
            export = staging / "export"
            if path.is_dir():
                ExportFiles(path, limits).copy_to(export)
                shown_as = path
            elif path.is_file():
                export = extract_tarball(path, export, limits)
                shown_as = shown_in_tarball(path, staging / "export", export)
            else:
                raise OlxError(f"{path}: no such export folder or .tar.gz")
            course = read_export_folder(export, limits, shown_as=shown_as)
            _swap_into_place(export, root / folder_name(course.course_key))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("Added OLX export of %s from %s", course.course_key, path)
        return course.course_key


def _swap_into_place(new, target):
    """Rename `new` to `target`; an older `target` is renamed away first and then removed."""
    old = None
    if target.exists():
        old = target.with_name(f".replaced-{uuid.uuid4().hex}")
        os.rename(target, old)
    try:
        os.rename(new, target)
    except OSError:
        if old is not None:
            os.rename(old, target)
        raise
    os.utime(target)  # the time the course was (re)published here: the copy kept the export's own
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
