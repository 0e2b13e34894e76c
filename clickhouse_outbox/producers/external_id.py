"""
The external_id producer: a user's external id (ExternalId, with its type and the user's
username) as its row, queued when it is saved.
"""

from clickhouse_outbox.clickhouse.tables import EXTERNAL_ID
from clickhouse_outbox.outbox import registry
from clickhouse_outbox.producers.model_rows import ModelRowProducer
from clickhouse_outbox.serializers.users import (
    EXTERNAL_ID_VALUES,
    external_id_row,
    external_id_values_encoder,
)


class ExternalId(ModelRowProducer):
    name = "external_id"
    noun = ("external id", "external ids")
    model_name = "external_id"
    one_row_capture = True
    table = EXTERNAL_ID
    related = ("user", "external_id_type")
    id_column = None  # the table keeps external_user_id, not the row's id
    key_column = "external_user_id"

    values_fields = EXTERNAL_ID_VALUES

    def user_of(self, external_id):
        return external_id.user_id

    def serialize(self, external_id, *, dump_id, time_last_dumped):
        return external_id_row(external_id, dump_id=dump_id, time_last_dumped=time_last_dumped)

    def values_encoder(self, *, dump_id, time_last_dumped):
        return external_id_values_encoder(dump_id=dump_id, time_last_dumped=time_last_dumped)


EXTERNAL_IDS = registry.register(ExternalId())
