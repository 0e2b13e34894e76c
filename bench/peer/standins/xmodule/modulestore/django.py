"""
Stand-in for edx-platform's `xmodule.modulestore.django`: `modulestore()` returns one
in-memory store that serves the courses loaded into it with `add_course(published_course)`,
where `published_course` is a `clickhouse_outbox.sources.base.PublishedCourse` (made by
`clickhouse_outbox.testing.generator.generate_published_course` in the benchmark).

The peer's course sink only calls `get_items(course_key)` and reads, on each item:
`location` (str() and `.for_branch(None)`), `scope_ids.block_type`,
`scope_ids.usage_id.course_key`, `display_name_with_default`, `graded`,
`completion_mode` and `edited_on`. The items are built once, when the course is added,
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
        "graded", "completion_mode", "edited_on", "children",
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


class StandInModuleStore:
    def __init__(self):
        self._items = {}

    def add_course(self, course):
        """Serve `course` (a PublishedCourse) from now on, replacing any earlier version."""
        ordered, seen, stack = [], set(), [course.root]
        while stack:
            location = stack.pop()
            if location in seen:
                continue
            seen.add(location)
            block = course.blocks[location]
            ordered.append(StandInXBlock(block))
            stack.extend(reversed(block.children))
        ordered.extend(StandInXBlock(block) for block in course.detached if block.location not in seen)
        self._items[_plain(course.course_key)] = ordered

    def get_items(self, course_key, qualifiers=None, **kwargs):
        """Every block of the course (a new list each call, as the platform's)."""
        items = self._items.get(_plain(course_key), [])
        category = (qualifiers or {}).get("category")
        if category is not None:
            return [item for item in items if item.category == category]
        return list(items)

    def clear(self):
        self._items.clear()


def _plain(course_key):
    return course_key.replace(branch=None, version_guid=None)


_STORE = StandInModuleStore()


def modulestore():
    return _STORE
