"""
What a batch says once rows it carried are gone: ClickHouse's error text may quote any row of
the batch, so when a retirement or a delete removes rows (from a snapshot's entries or from a
chunk of a whole-table dump), the error of every batch that carried them goes too.
"""

from clickhouse_outbox.models import Batch

#: Batches whose rows may still be sent, or whose error is still shown.
OPEN_BATCHES = (Batch.Status.CLAIMED, Batch.Status.RETRY, Batch.Status.FAILED)

#: What a batch's error becomes when a retirement or a delete removed rows it carried.
ERROR_CLEARED = ("The error text was cleared: this batch carried rows that a retirement or a delete removed "
                 "(ClickHouse's error code and HTTP status are kept).")


def clear_batch_errors(batch_ids):
    """
    Replace ClickHouse's error text on `batch_ids` and on the batches they were split from
    (the parent's error may quote any row of its children): it may quote the removed rows.
    A split halves a batch, so the chain is short (about log2 of a batch's rows).
    """
    seen, frontier = set(batch_ids), set(batch_ids)
    while frontier:
        parents = set(Batch.objects.filter(id__in=frontier, split_from__isnull=False)
                      .values_list("split_from_id", flat=True)) - seen
        seen |= parents
        frontier = parents
    if seen:
        Batch.objects.filter(id__in=seen).exclude(last_error="").exclude(last_error=ERROR_CLEARED).update(
            last_error=ERROR_CLEARED
        )
