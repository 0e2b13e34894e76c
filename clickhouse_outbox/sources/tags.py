"""
Content tags of a block as Aspects reports them: the ids of its tags and of all their parents.

The tagging app (`openedx.core.djangoapps.content_tagging`, Redwood and later) only exists
inside edx-platform; without it a block has no tags.
"""

import functools
import logging

log = logging.getLogger(__name__)


@functools.cache
def _object_tags_api():
    """The platform's get_object_tags, or None where the tagging app is not installed (checked once)."""
    try:
        from openedx.core.djangoapps.content_tagging.api import get_object_tags
    except ImportError:
        log.debug("openedx content_tagging is not installed: blocks are reported without tags")
        return None
    return get_object_tags


def get_tags_for_block(usage_key) -> list:
    """Sorted tag ids applied to the block or course `usage_key`, parent tags included."""
    get_object_tags = _object_tags_api()
    if get_object_tags is None:
        return []
    tag_ids = set()
    for object_tag in get_object_tags(object_id=str(usage_key)):
        tag = object_tag.tag  # None for a free-text tag
        while tag is not None:
            tag_ids.add(tag.id)
            tag = tag.parent
    return sorted(tag_ids)
