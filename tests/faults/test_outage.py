"""
Fault test 1: the ClickHouse server is down while courses are published and drains run.

The test's own server (not the shared one) is stopped after a first lot of courses went
through; 100 courses are published during the outage while in-process drains and
`manage.py outbox_drain` processes keep trying; then the server comes back on the same
data directory and the outbox drains. Every snapshot must be in ClickHouse exactly once
(per dump_id and location), and the bookkeeping must show each failed attempt.
"""

import random
import time

import pytest
from django.db.models import Sum

from clickhouse_outbox.models import Batch, OutboxEntry, Snapshot
from clickhouse_outbox.outbox.drain import drain
from tests.factories import CourseSnapshotFactory
from tests.faults.helpers import (
    TABLES,
    Drainer,
    assert_all_sent,
    assert_every_row_exactly_once,
    ch_count,
    drain_everything,
    report,
    row_figures,
)
from tests.processes import project_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.clickhouse_server, pytest.mark.slow]

BEFORE = 10  # courses published and drained before the outage
DURING = 100  # courses published while the server is down
DRAIN_EVERY = 10  # an in-process drain after every this many publishes during the outage
PROCESS_DRAINS_AT = (49, 99)  # ... and a manage.py outbox_drain process after these


def small_course(rng):
    return CourseSnapshotFactory(course__blocks=rng.randint(4, 15))


def test_an_outage_while_courses_are_published_loses_nothing_and_duplicates_nothing(
    own_clickhouse_server, own_clickhouse, fast_retries, settings, tmp_path
):
    rng = random.Random(1)
    # The outage's drains (ten in this process, two processes) can each make an attempt when
    # the machine is slow enough for every retry to come due: more than the default 12 allowed
    # would fail the batch for good (seen under load), which is not what this test is about.
    settings.CLICKHOUSE_OUTBOX_MAX_ATTEMPTS = 50
    config = dict(settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG)
    env = project_env(config, **fast_retries, CLICKHOUSE_OUTBOX_MAX_ATTEMPTS=50)
    address = f"127.0.0.1:{own_clickhouse_server.http_port}"

    before = [small_course(rng) for _ in range(BEFORE)]
    result = drain()
    assert result.ok and result.batches_sent == len(TABLES)
    rows_before = sum(snapshot.row_count for snapshot in before)
    assert sum(ch_count(own_clickhouse, table.name) for table in TABLES) == rows_before
    sent_before = set(Batch.objects.values_list("id", flat=True))

    own_clickhouse_server.stop()
    started = time.monotonic()
    in_process_attempts = process_attempts = 0
    process_outputs = []
    during = []
    for index in range(DURING):
        during.append(small_course(rng))
        if index % DRAIN_EVERY == DRAIN_EVERY - 1:
            if index == 49:
                time.sleep(0.6)  # let the first failed batches come due, so some are retried in the outage
            result = drain()
            # One batch probes the server when its retry is due; new rows wait, spending no attempts.
            assert result.batches_sent == 0 and result.batches_retrying in (0, 1), result
            if result.batches_retrying:
                assert address in result.errors[0] and "Could not reach ClickHouse" in result.errors[0]
            in_process_attempts += result.batches_retrying
        if index in PROCESS_DRAINS_AT:
            attempts_before = Batch.objects.aggregate(n=Sum("attempts"))["n"] or 0
            drainer = Drainer("outbox_drain", "--once", env=env, log_path=tmp_path / f"drain-{index}.log")
            exit_code = drainer.wait(timeout=60)
            output = drainer.output()
            assert exit_code != 0, output  # cron hears of the outage even when no batch was due
            assert "ClickHouse is failing" in output and "Could not reach ClickHouse" in output, output
            process_outputs.append(output)
            process_attempts += (Batch.objects.aggregate(n=Sum("attempts"))["n"] or 0) - attempts_before
    outage_secs = time.monotonic() - started

    # The bookkeeping during the outage: one batch took every attempt (the first failure
    # was the server's, so no drain claimed new rows after it), each recorded on it.
    outage_batches = Batch.objects.exclude(id__in=sent_before)
    assert outage_batches.count() == 1
    assert set(outage_batches.values_list("status", flat=True)) == {Batch.Status.RETRY}
    assert outage_batches.aggregate(n=Sum("attempts"))["n"] == in_process_attempts + process_attempts
    assert in_process_attempts + process_attempts >= 2
    for batch in outage_batches:
        assert batch.attempts >= 1 and batch.next_attempt_at is not None
        assert "Could not reach ClickHouse" in batch.last_error and address in batch.last_error
        assert batch.http_status is None and batch.lease_owner is None
    retried_in_outage = outage_batches.filter(attempts__gt=1).count()
    outage_ids = set(outage_batches.values_list("id", flat=True))
    assert retried_in_outage >= 1
    pending = OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING).count()
    assert pending > 0  # a failing drain stops at its first batch: the rest wait, untouched
    assert not Snapshot.objects.exclude(status=Snapshot.Status.QUEUED).exists()

    own_clickhouse_server.start()  # same data directory
    assert sum(ch_count(own_clickhouse, table.name) for table in TABLES) == rows_before
    drain_everything(timeout=60)

    assert_all_sent()
    figures = assert_every_row_exactly_once(own_clickhouse)
    for snapshot in before + during:
        found = sum(ch_count(own_clickhouse, table.name, f"dump_id = '{snapshot.dump_id}'") for table in TABLES)
        assert found == snapshot.row_count, snapshot
    failed_once = Batch.objects.filter(id__in=outage_ids)
    assert all(batch.attempts > 1 for batch in failed_once)
    assert set(Batch.objects.exclude(id__in=outage_ids).values_list("attempts", flat=True)) == {1}
    assert not Batch.objects.exclude(last_error="").exists()  # a sent batch keeps no error

    attempts = sorted(failed_once.values_list("attempts", flat=True))
    report(
        "outage",
        courses=len(before) + len(during),
        courses_during_outage=len(during),
        **row_figures(figures),
        outage_secs=round(outage_secs, 1),
        drain_runs_in_outage=f"{in_process_attempts} in-process + {process_attempts} processes",
        batches_failed_in_outage=len(attempts),
        batches_retried_in_outage=retried_in_outage,
        attempts_of_failed_batches=attempts,
        batches_total=Batch.objects.count(),
    )
