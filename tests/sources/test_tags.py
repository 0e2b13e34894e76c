"""get_tags_for_block: the platform's tagging API when present, no tags otherwise."""

import sys
from types import ModuleType, SimpleNamespace

import pytest

from clickhouse_outbox.sources import tags

API = "openedx.core.djangoapps.content_tagging.api"


@pytest.fixture(autouse=True)
def fresh_lookup():
    tags._object_tags_api.cache_clear()
    yield
    tags._object_tags_api.cache_clear()


def tag(tag_id, parent=None):
    return SimpleNamespace(id=tag_id, parent=parent)


def test_without_the_tagging_app_blocks_have_no_tags(caplog):
    caplog.set_level("DEBUG", logger="clickhouse_outbox.sources.tags")
    assert API not in sys.modules
    assert tags.get_tags_for_block("block-v1:O+C+R+type@html+block@h") == []
    assert tags.get_tags_for_block("block-v1:O+C+R+type@html+block@i") == []
    assert [r.message for r in caplog.records].count(
        "openedx content_tagging is not installed: blocks are reported without tags") == 1


def test_tag_ids_with_their_parents_sorted_and_unique(monkeypatch):
    calls = []
    root = tag(1)
    object_tags = {
        "block-v1:O+C+R+type@html+block@h": [
            SimpleNamespace(tag=tag(12, tag(5, root))),
            SimpleNamespace(tag=tag(7, root)),
            SimpleNamespace(tag=None),  # a free-text tag
        ],
    }

    def get_object_tags(object_id):
        calls.append(object_id)
        return object_tags.get(object_id, [])

    package = ""
    for part in API.split("."):
        package = f"{package}.{part}" if package else part
        monkeypatch.setitem(sys.modules, package, ModuleType(package))
    sys.modules[API].get_object_tags = get_object_tags

    assert tags.get_tags_for_block("block-v1:O+C+R+type@html+block@h") == [1, 5, 7, 12]
    assert tags.get_tags_for_block("course-v1:O+C+R") == []
    assert calls == ["block-v1:O+C+R+type@html+block@h", "course-v1:O+C+R"]
