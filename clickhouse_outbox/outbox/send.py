"""
Sending a claimed batch: join its entries' stored gzip members in order and make one INSERT,
or, for a batch of deletes, one ALTER TABLE ... DELETE.

No database transaction or lock is held here. The batch's membership and order were
fixed by the claim, so a retry sends the same bytes with the same deduplication token
(only a retirement takes rows out of a batch: see outbox.deletes).
"""

from django.db.models import Sum

from clickhouse_outbox.clickhouse.errors import ClickHouseError
from clickhouse_outbox.clickhouse.tables import get_table
from clickhouse_outbox.models import Kind, OutboxEntry
from clickhouse_outbox.outbox.deletes import parse_delete
from clickhouse_outbox.serializers.payloads import GZIP, gzip_body


def batch_entries(batch):
    """The entries whose rows the batch carries, in order (not those a retirement removed)."""
    return OutboxEntry.objects.filter(batch=batch, status=OutboxEntry.Status.BATCHED).order_by("id")


def batch_payload(batch):
    """The batch's rows as one gzip-compressed JSONEachRow body, in entry order."""
    parts = batch_entries(batch).values_list("payload", "encoding")
    return gzip_body(parts.iterator(chunk_size=100))


def batch_deletes(batch):
    """{column: [values]} of a batch of deletes, in entry order, each value once."""
    wanted = {}
    for payload in batch_entries(batch).values_list("payload", flat=True):
        column, values = parse_delete(payload)
        wanted.setdefault(column, {}).update(dict.fromkeys(values))
    return {column: list(values) for column, values in wanted.items()}


def send_batch(batch, backend):
    """
    INSERT the batch into its table (or delete what it names); raises ClickHouseError when
    ClickHouse does not take it. A batch whose rows were all removed sends nothing.
    """
    try:
        table = get_table(batch.table)
    except KeyError:
        raise ClickHouseError(
            f"No producer registers a table named {batch.table!r}; its rows wait until one does.",
            retryable=True,
        ) from None
    if batch.kind == Kind.DELETE:
        return backend.delete(table, batch_deletes(batch))
    # Counted now, not at the claim: a retirement may have taken rows out of the batch since.
    rows = batch_entries(batch).aggregate(rows=Sum("row_count"))["rows"] or 0
    if not rows:
        return None
    return backend.insert(table, batch_payload(batch), rows=rows, dedup_token=dedup_token(batch), encoding=GZIP)


def dedup_token(batch):
    """ClickHouse's insert_deduplication_token: fixed for the batch, unique across outboxes."""
    return f"clickhouse_outbox-{batch.token}"
