"""
Stand-in for edx-platform's `openedx.core.djangoapps.content_tagging.api`: `get_object_tags`,
which the peer's course sink calls for the course and for every block (utils.get_tags_for_block).
The benchmark's courses carry no tags, so it answers none, as our own side reads none (the
project's sources/tags.py finds no tagging app in the standalone project). On a site with the
tagging app both sides run one query per block there; without this module the peer would try
(and fail) to import the platform's at every block, a cost no site pays.
"""


def get_object_tags(object_id, taxonomy_id=None):
    return []
