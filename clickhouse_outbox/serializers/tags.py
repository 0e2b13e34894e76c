"""
Content tagging rows: taxonomy, tag and object_tag, column for column as
platform-plugin-aspects 2.1.0's serializers give them and ClickHouse stores them.

A missing link (a root tag's parent, a free-text object tag's tag, a deleted taxonomy) is
0 in its Int32 column: the peer's CSV leaves the field empty, which ClickHouse reads as the
column's default. `lineage` is `json.dumps` of openedx_tagging's own `get_lineage()`.
"""

import json

from clickhouse_outbox.clickhouse.tables import OBJECT_TAG, TAG, TAXONOMY
from clickhouse_outbox.serializers.encoding import encode_row


def taxonomy_row(taxonomy, *, dump_id, time_last_dumped):
    return encode_row(TAXONOMY.column_names, (taxonomy.id, taxonomy.name, str(dump_id), time_last_dumped))


def tag_row(tag, *, dump_id, time_last_dumped):
    return encode_row(TAG.column_names, (
        tag.id,
        tag.taxonomy_id or 0,
        tag.parent_id or 0,
        tag.value,
        tag.external_id or "",
        json.dumps(tag.get_lineage()),
        str(dump_id),
        time_last_dumped,
    ))


def object_tag_row(object_tag, *, dump_id, time_last_dumped):
    return encode_row(OBJECT_TAG.column_names, (
        object_tag.id,
        object_tag.object_id,
        object_tag.taxonomy_id or 0,
        object_tag.tag_id or 0,
        object_tag._value,  # noqa: SLF001 (the model's own column, which the peer sends)
        object_tag._export_id,  # noqa: SLF001
        json.dumps(object_tag.get_lineage()),
        str(dump_id),
        time_last_dumped,
    ))
