"""
Stand-in for edx-platform's `xmodule.modulestore.django`: `modulestore()` returns one
in-memory store that serves the courses loaded into it with `add_course(published_course)`,
where `published_course` is a `clickhouse_outbox.sources.base.PublishedCourse` (made by
`clickhouse_outbox.testing.generator.generate_published_course` in the benchmark).

openedx-event-sink-clickhouse 1.1.1's course sink only calls `get_items(course_key)`;
platform-plugin-aspects 2.1.0's walks `get_course(course_key, revision=...)` and each
block's `get_children()` (the tree in course order), then `get_items(course_key,
revision=...)` for the detached blocks. Both read, on each item: `location` (str() and
`.for_branch(None)`), `scope_ids.block_type`, `scope_ids.usage_id.course_key`,
`display_name_with_default`, `graded`, `completion_mode` and `edited_on`. The items are built once, when the course is added,
so the timed peer code pays nothing for the store itself: a real modulestore would load
the structure (split-mongo) and instantiate XBlocks with field-data lookups on each read.

Order: the course tree depth-first, pre-order from the course block, then the detached
blocks - the order clickhouse_outbox's serializer walks the same PublishedCourse in, so
both sides number blocks alike (the platform's own get_items order is the structure's
storage order, which the peer does not sort).
"""

from collections import namedtuple

from opaque_keys.edx.keys import UsageKey

# The shape of xblock.fields.ScopeIds.
ScopeIds = namedtuple("ScopeIds", "user_id block_type def_id usage_id")


class StandInXBlock:
    """The fields of an XBlock the peer reads, as plain attributes."""

    __slots__ = (
        "location", "scope_ids", "category", "display_name", "display_name_with_default",
        "graded", "completion_mode", "edited_on", "children", "child_blocks",
    )

    def __init__(self, block):
        location = UsageKey.from_string(block.location)  # a BlockUsageLocator
        self.location = location
        self.scope_ids = ScopeIds(None, block.block_type, location, location)
        self.category = block.block_type
        self.display_name = block.display_name
        self.display_name_with_default = block.display_name
        self.graded = block.graded
        self.completion_mode = block.completion_mode
        self.edited_on = block.edited_on
        self.children = [UsageKey.from_string(child) for child in block.children]
        self.child_blocks = []  # the child items, linked by the store once the course's items exist

    def get_children(self):
        """The child blocks in course order (XBlock.get_children: the store serves them, already built)."""
        return list(self.child_blocks)


class StandInModuleStore:
    def __init__(self):
        self._items = {}
        self._courses = {}

    def add_course(self, course):
        """Serve `course` (a PublishedCourse) from now on, replacing any earlier version."""
        ordered, seen, stack = [], set(), [course.root]
        while stack:
            location = stack.pop()
            if location in seen:
                continue
            seen.add(location)
            block = course.blocks[location]
            ordered.append((location, StandInXBlock(block)))
            stack.extend(reversed(block.children))
        ordered.extend((block.location, StandInXBlock(block)) for block in course.detached if block.location not in seen)
        by_location = dict(ordered)
        for location, item in ordered:
            item.child_blocks = [by_location[child] for child in course.blocks[location].children
                                 if child in by_location] if location in course.blocks else []
        self._items[_plain(course.course_key)] = [item for _, item in ordered]
        self._courses[_plain(course.course_key)] = by_location[course.root]

    def get_course(self, course_key, depth=0, revision=None, **kwargs):
        """The course block, or None (as the platform's store for an unknown course)."""
        return self._courses.get(_plain(course_key))

    def get_items(self, course_key, qualifiers=None, **kwargs):
        """Every block of the course (a new list each call, as the platform's)."""
        items = self._items.get(_plain(course_key), [])
        category = (qualifiers or {}).get("category")
        if category is not None:
            return [item for item in items if item.category == category]
        return list(items)

    def clear(self):
        self._items.clear()
        self._courses.clear()


def _plain(course_key):
    return course_key.replace(branch=None, version_guid=None)


_STORE = StandInModuleStore()


def modulestore():
    return _STORE
