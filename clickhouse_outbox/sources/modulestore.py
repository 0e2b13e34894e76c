"""
The published course read from edx-platform's modulestore, inside the CMS.

edx-platform is imported lazily in the three small functions below, so this module
imports anywhere; tests hand `ModulestoreSource` a stand-in store instead. The walk
mirrors platform-plugin-aspects' XBlockSink (published revision, depth-first pre-order
from the course block, detached blocks after), without its recursion and with a stable
order for the detached blocks.
"""

import contextlib
from datetime import UTC, timedelta

from clickhouse_outbox.sources.base import (
    Block,
    CourseNotFound,
    CourseSource,
    CourseSourceError,
    PublishedCourse,
    source_course_key,
)
from clickhouse_outbox.sources.keys import parse_course_key, without_branch
from clickhouse_outbox.sources.tags import get_tags_for_block

#: Detached types in the order the contract lists them; any other detached type follows.
DETACHED_ORDER = ("about", "course_info", "static_tab")
DEFAULT_LOWEST_PASSING_GRADE = 0.5


def get_modulestore():
    from xmodule.modulestore.django import modulestore

    return modulestore()


def published_only():
    from xmodule.modulestore import ModuleStoreEnum

    return ModuleStoreEnum.RevisionOption.published_only  # "rev-opt-published-only"


def detached_xblock_types():
    from xmodule.modulestore.store_utilities import DETACHED_XBLOCK_TYPES

    return DETACHED_XBLOCK_TYPES


def course_overview_created(course_key):
    """When the platform's CourseOverview of the course was created (the peers' `created`), or None."""
    try:
        from openedx.core.djangoapps.content.course_overviews.models import CourseOverview
    except ImportError:
        return None
    return CourseOverview.objects.filter(id=course_key).values_list("created", flat=True).first()


def course_overviews_modified(course_keys):
    """{course key: its CourseOverview's `modified`} (the platform rewrites it when the course is published)."""
    from openedx.core.djangoapps.content.course_overviews.models import CourseOverview

    keys = [parse_course_key(key) for key in course_keys]
    return {str(key): modified for key, modified in CourseOverview.objects.filter(id__in=keys)
            .values_list("id", "modified")}


def course_overviews_changed_since(since):
    """
    Keys of the courses whose CourseOverview changed at or after `since`: the platform
    rewrites a course's overview when it is published, so its `modified` follows publishes.
    """
    from openedx.core.djangoapps.content.course_overviews.models import CourseOverview

    return list(CourseOverview.objects.filter(modified__gte=since).values_list("id", flat=True))


class ModulestoreSource(CourseSource):
    """
    Published courses from the modulestore. Every argument defaults to the platform's
    own (imported on first use): `store`, `detached_types`, `revision`, `get_tags`
    (usage key or course key -> sorted tag ids), `get_created` (course key -> datetime)
    `get_changed` (datetime -> course keys published since) and `get_modified` (course keys ->
    {key: when last published}).
    """

    def __init__(self, store=None, detached_types=None, revision=None, get_tags=None, get_created=None,
                 get_changed=None, get_modified=None):
        self._store = store
        self._detached_types = detached_types
        self._revision = revision
        self._get_tags = get_tags or get_tags_for_block
        self._get_created = get_created or course_overview_created
        self._get_changed = get_changed or course_overviews_changed_since
        self._get_modified = get_modified or course_overviews_modified

    @property
    def store(self):
        if self._store is None:
            self._store = get_modulestore()
        return self._store

    @property
    def revision(self):
        return self._revision if self._revision is not None else published_only()

    @property
    def detached_types(self):
        if self._detached_types is None:
            self._detached_types = frozenset(detached_xblock_types())
        return self._detached_types

    def get_course(self, course_key) -> PublishedCourse:
        key = source_course_key(course_key)
        store = self.store
        bulk = getattr(store, "bulk_operations", None)
        try:
            # One bulk operation: split-modulestore loads the course structure once for both reads.
            with bulk(key) if bulk else contextlib.nullcontext():
                course = store.get_course(key, depth=None, revision=self.revision)
                if course is None:
                    raise CourseNotFound(f"{key}: no published course in the modulestore")
                blocks = self._tree(key, course)
                detached = self._detached(store, key)
                return self._published_course(key, course, blocks, detached)
        except CourseSourceError:
            raise
        except Exception as exc:
            if type(exc).__name__ == "ItemNotFoundError":  # xmodule.modulestore.exceptions
                raise CourseNotFound(f"{key}: no published course in the modulestore") from exc
            raise CourseSourceError(f"{key}: cannot read the published course ({exc!r})") from exc

    def course_keys(self):
        store = self.store
        # Course summaries are much lighter than course blocks where the store has them.
        courses = store.get_course_summaries() if hasattr(store, "get_course_summaries") else store.get_courses()
        return sorted({without_branch(course.id) for course in courses}, key=str)

    def course_keys_changed_since(self, since):
        return sorted({source_course_key(key) for key in self._get_changed(since)}, key=str)

    def published_times(self, course_keys):
        return {str(key): _aware(when) for key, when in self._get_modified(course_keys).items() if when is not None}

    # -- reading -------------------------------------------------------------------------

    def _tree(self, key, course):
        """Depth-first, pre-order, iteratively from the course block."""
        blocks = {}
        stack = [(course, None)]
        while stack:
            xblock, parent = stack.pop()
            block = self._block(xblock)
            if block.location in blocks:
                raise CourseSourceError(f"{key}: {block.location} is reached twice in the course tree")
            blocks[block.location] = block
            if parent is not None:
                blocks[parent].children.append(block.location)
            if getattr(xblock, "has_children", True):
                stack.extend((child, block.location) for child in reversed(list(xblock.get_children())))
        return blocks

    def _detached(self, store, key):
        items = []
        for block_type in sorted(self.detached_types, key=_detached_rank):
            found = store.get_items(key, qualifiers={"category": block_type}, revision=self.revision)
            items.extend(sorted(found, key=lambda xblock: _location_string(xblock.location)))
        return items

    def _block(self, xblock):
        location = _location_string(xblock.location)
        block_type = xblock.scope_ids.block_type
        fields = {}
        if block_type == "video":
            fields = {
                "video_start_time": _seconds(getattr(xblock, "start_time", None)),
                "video_end_time": _seconds(getattr(xblock, "end_time", None)),
            }
        return Block(
            location=location,
            block_type=block_type,
            display_name=xblock.display_name_with_default,
            graded=bool(getattr(xblock, "graded", False)),
            completion_mode=str(getattr(xblock, "completion_mode", "") or ""),
            edited_on=str(getattr(xblock, "edited_on", "") or ""),
            fields=fields,
            tags=self._get_tags(location),
        )

    def _published_course(self, key, course, blocks, detached_items):
        detached = [self._block(xblock) for xblock in detached_items]
        effort = next((x for x in detached_items if x.scope_ids.block_type == "about"
                       and x.location.block_id == "effort"), None)
        lowest_passing_grade = getattr(course, "lowest_passing_grade", None)
        return PublishedCourse(
            course_key=key,
            root=_location_string(course.location),
            blocks=blocks,
            detached=detached,
            display_name=course.display_name_with_default,
            start=_aware(getattr(course, "start", None)),
            end=_aware(getattr(course, "end", None)),
            enrollment_start=_aware(getattr(course, "enrollment_start", None)),
            enrollment_end=_aware(getattr(course, "enrollment_end", None)),
            self_paced=bool(getattr(course, "self_paced", False)),
            advertised_start=getattr(course, "advertised_start", None),
            announcement=_aware(getattr(course, "announcement", None)),
            lowest_passing_grade=(
                DEFAULT_LOWEST_PASSING_GRADE if lowest_passing_grade is None else float(lowest_passing_grade)
            ),
            invitation_only=bool(getattr(course, "invitation_only", False)),
            max_student_enrollments_allowed=getattr(course, "max_student_enrollments_allowed", None),
            # CourseOverview reads the effort from the "effort" about block, as the OLX source does.
            effort=(getattr(effort, "data", "") or "").strip() if effort is not None else None,
            enable_proctored_exams=bool(getattr(course, "enable_proctored_exams", False)),
            entrance_exam_enabled=bool(getattr(course, "entrance_exam_enabled", False)),
            language=getattr(course, "language", None) or "",
            tags=self._get_tags(key),
            created=_aware(self._get_created(key)),
            modified=_aware(getattr(course, "subtree_edited_on", None) or getattr(course, "edited_on", None)),
        )


def _detached_rank(block_type):
    if block_type in DETACHED_ORDER:
        return (DETACHED_ORDER.index(block_type), "")
    return (len(DETACHED_ORDER), block_type)


def _location_string(location):
    """`block-v1:...` without branch or version, as the course_blocks table stores it."""
    return str(without_branch(location))


def _seconds(value):
    if value is None:
        return 0.0
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def _aware(value):
    if value is None or getattr(value, "tzinfo", True) is not None:
        return value
    return value.replace(tzinfo=UTC)
