"""
The content tagging producers (openedx_tagging's models, from openedx-core or Ulmo's
openedx-learning): taxonomies, tags and object tags, each as its row, queued when saved; a
deleted one is deleted from its table too (the peer never sends deletes, so a deleted tag
stays in the dashboards).
"""

from clickhouse_outbox.clickhouse.tables import OBJECT_TAG, TAG, TAXONOMY
from clickhouse_outbox.outbox import registry
from clickhouse_outbox.producers.model_rows import DeletedRowsGo
from clickhouse_outbox.serializers.tags import object_tag_row, tag_row, taxonomy_row


class Taxonomy(DeletedRowsGo):
    name = "taxonomy"
    noun = ("taxonomy", "taxonomies")
    model_name = "taxonomy"
    table = TAXONOMY

    def serialize(self, taxonomy, *, dump_id, time_last_dumped):
        return taxonomy_row(taxonomy, dump_id=dump_id, time_last_dumped=time_last_dumped)


class Tag(DeletedRowsGo):
    name = "tag"
    noun = ("tag", "tags")
    model_name = "tag"
    table = TAG

    def serialize(self, tag, *, dump_id, time_last_dumped):
        return tag_row(tag, dump_id=dump_id, time_last_dumped=time_last_dumped)


class ObjectTag(DeletedRowsGo):
    name = "object_tag"
    noun = ("object tag", "object tags")
    model_name = "object_tag"
    table = OBJECT_TAG
    related = ("tag", "taxonomy")

    def serialize(self, object_tag, *, dump_id, time_last_dumped):
        return object_tag_row(object_tag, dump_id=dump_id, time_last_dumped=time_last_dumped)


TAXONOMIES = registry.register(Taxonomy())
TAGS = registry.register(Tag())
OBJECT_TAGS = registry.register(ObjectTag())
