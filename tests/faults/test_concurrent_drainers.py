"""
Fault test 3 of issue 3: four drainer processes at once over more than 20,000 rows.

Four `manage.py outbox_drain --until-empty` processes start together on the same outbox
(small batches and entries, so there are dozens of claims to race for, plus a dozen claims
of "dead" drainers whose leases ran out, to reclaim) and drain into a fresh database of
the shared 18.16 server, which cannot deduplicate: a batch sent by two drainers would show
as a second copy. PostgreSQL and MariaDB claim with SKIP LOCKED,
SQLite with compare-and-swap.
"""

import re
import uuid
from datetime import timedelta
from collections import Counter

import pytest
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from clickhouse_outbox.clickhouse.tables import COURSE_BLOCKS
from clickhouse_outbox.models import Batch, OutboxEntry
from clickhouse_outbox.outbox.claim import claim_batch, due_batches, skip_locked
from tests.factories import CourseSnapshotFactory
from tests.faults.helpers import (
    TABLES,
    assert_all_sent,
    assert_every_row_exactly_once,
    queued_rows,
    report,
    row_figures,
    run_drainers_until_empty,
)
from tests.processes import project_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.clickhouse_server, pytest.mark.slow]

DRAINERS = 4
COURSES = 100
BLOCKS = 100  # 100 courses of 100 blocks: 20,200 rows
BATCH_ROWS = 400
ENTRY_MAX_BYTES = 16384
DEAD_CLAIMS = 12
DRAINED = re.compile(r"Drained: ([\d,]+) batch(?:es)? \(([\d,]+) rows?\) sent")


def test_four_drainers_at_once_send_every_row_once(server_clickhouse, settings, tmp_path):
    settings.CLICKHOUSE_OUTBOX_ENTRY_MAX_BYTES = ENTRY_MAX_BYTES
    snapshots = [CourseSnapshotFactory(course__blocks=BLOCKS) for _ in range(COURSES)]
    total_rows = sum(snapshot.row_count for snapshot in snapshots)
    assert total_rows >= 20_000
    entries = OutboxEntry.objects.count()
    # Drainers that died holding claims: their batches come back when the 1-second leases end,
    # and the four drainers race to reclaim them as well as to claim new ones.
    settings.CLICKHOUSE_OUTBOX_BATCH_ROWS = BATCH_ROWS
    # Claimed under a long lease, then ended: with a 1-second lease a loaded machine took more than
    # a second over the twelve claims, and the later ones took back an earlier one (twelve claims,
    # nine batches).
    settings.CLICKHOUSE_OUTBOX_LEASE_SECS = 300
    dead = [claim_batch(uuid.uuid4()).pk for _ in range(DEAD_CLAIMS)]
    assert len(set(dead)) == DEAD_CLAIMS
    settings.CLICKHOUSE_OUTBOX_LEASE_SECS = 1
    Batch.objects.filter(pk__in=dead).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert due_batches().count() == DEAD_CLAIMS
    env = project_env(
        settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG,
        CLICKHOUSE_OUTBOX_BATCH_ROWS=BATCH_ROWS,
        CLICKHOUSE_OUTBOX_ENTRY_MAX_BYTES=ENTRY_MAX_BYTES,
        CLICKHOUSE_OUTBOX_LEASE_SECS=60,  # no lease may run out here: an overlap must come from the claim
        OUTBOX_LOG_LEVEL="WARNING",
    )

    # 20,000 rows take about 50 s here; a machine loaded by other work took them past 120 s.
    outputs, elapsed = run_drainers_until_empty([env] * DRAINERS, tmp_path, timeout=300)
    sent = []
    for output in outputs:
        (match,) = DRAINED.findall(output)
        sent.append((int(match[0].replace(",", "")), int(match[1].replace(",", ""))))
    assert sum(rows for _, rows in sent) == total_rows
    assert sum(batches for batches, _ in sent) == Batch.objects.count()
    assert sum(1 for batches, _ in sent if batches) >= 2, f"the drainers did not overlap: {sent}"

    assert_all_sent()
    assert not OutboxEntry.objects.exclude(status=OutboxEntry.Status.BATCHED).exists()
    assert OutboxEntry.objects.count() == entries
    per_batch = OutboxEntry.objects.values("batch_id").annotate(n=Count("id"))
    assert sum(row["n"] for row in per_batch) == entries  # each entry in exactly one (sent) batch
    assert set(Batch.objects.filter(pk__in=dead).values_list("attempts", flat=True)) == {2}
    assert set(Batch.objects.exclude(pk__in=dead).values_list("attempts", flat=True)) == {1}
    assert all(batch.row_count <= BATCH_ROWS or batch.entries.count() == 1 for batch in Batch.objects.all())
    figures = assert_every_row_exactly_once(server_clickhouse)
    assert sum(queued for queued, _, _ in figures.values()) == total_rows
    report(
        f"concurrent_drainers[{connection.vendor}, {'SKIP LOCKED' if skip_locked() else 'compare-and-swap'}]",
        drainers=DRAINERS,
        **row_figures(figures),
        entries=entries,
        batches=Batch.objects.count(),
        dead_claims_reclaimed=DEAD_CLAIMS,
        course_blocks_rows=queued_rows(COURSE_BLOCKS.name),
        batches_rows_per_drainer=sent,
        batches_per_table=dict(Counter(Batch.objects.values_list("table", flat=True))),
        elapsed_secs=round(elapsed, 1),
        tables=len(TABLES),
    )
