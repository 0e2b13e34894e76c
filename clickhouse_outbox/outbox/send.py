"""
Sending a claimed batch: join its entries' stored gzip members in order and make one INSERT.

No database transaction or lock is held here. The batch's membership and order were
fixed by the claim, so a retry sends the same bytes with the same deduplication token.
"""

from clickhouse_outbox.clickhouse.errors import ClickHouseError
from clickhouse_outbox.clickhouse.tables import get_table
from clickhouse_outbox.models import OutboxEntry
from clickhouse_outbox.outbox.payloads import GZIP, gzip_body


def batch_payload(batch):
    """The batch's rows as one gzip-compressed JSONEachRow body, in entry order."""
    parts = OutboxEntry.objects.filter(batch=batch).order_by("id").values_list("payload", "encoding")
    return gzip_body(parts.iterator(chunk_size=100))


def send_batch(batch, backend):
    """INSERT the batch into its table; raises ClickHouseError when ClickHouse does not take it."""
    try:
        table = get_table(batch.table)
    except KeyError:
        raise ClickHouseError(
            f"No producer registers a table named {batch.table!r}; its rows wait until one does.",
            retryable=True,
        ) from None
    return backend.insert(
        table, batch_payload(batch), rows=batch.row_count, dedup_token=dedup_token(batch), encoding=GZIP
    )


def dedup_token(batch):
    """ClickHouse's insert_deduplication_token: fixed for the batch, unique across outboxes."""
    return f"clickhouse_outbox-{batch.token}"
