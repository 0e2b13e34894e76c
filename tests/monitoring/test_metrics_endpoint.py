"""
/clickhouse_outbox/metrics, read as Prometheus reads it (prometheus_client's own parser), on a
real outbox state: rows queued by the producer, drained into the ClickHouse test server, one
batch failed for good by the server (its table dropped), rows left waiting, a verification
that found a difference. Every value is checked against the database, counted another way.
"""

from datetime import timedelta

import pytest
from opaque_keys.edx.keys import CourseKey
from prometheus_client.parser import text_string_to_metric_families

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.clickhouse.tables import all_tables
from clickhouse_outbox.models import Batch, DumpJob, OutboxEntry, Verdict
from clickhouse_outbox.db import db_now
from clickhouse_outbox.outbox.drain import drain
from clickhouse_outbox.producers.course_structure import COURSES
from tests.factories import BatchFactory, CourseSnapshotFactory
from tests.monitoring.conftest import TOKEN, age_unsent, bearer

pytestmark = pytest.mark.django_db

URL = "/clickhouse_outbox/metrics"


def scrape(client, **headers):
    response = client.get(URL, **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return samples(response.content.decode())


def samples(text):
    """{(name, ((label, value), ...)): value} of every sample in an exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found, name, **labels):
    return found[(f"clickhouse_outbox_{name}", tuple(sorted(labels.items())))]


def rows_of(snapshot, table):
    return sum(snapshot.entries.filter(table=table).values_list("row_count", flat=True))


@pytest.mark.clickhouse_server
def test_the_metrics_tell_the_real_outbox_state(server_clickhouse, settings, client, token):
    settings.CLICKHOUSE_OUTBOX_MAX_ATTEMPTS = 1  # the first failure is for good
    first = CourseSnapshotFactory(course__blocks=20)
    assert drain().batches_sent == 3
    server_clickhouse.command(f"DROP TABLE {qualified_name(server_clickhouse.database, 'course_relationships')}")
    second = CourseSnapshotFactory(course__blocks=10)
    result = drain()
    assert result.batches_sent == 2 and result.batches_failed == 1
    waiting = CourseSnapshotFactory(course__blocks=5)
    age_unsent(600)

    found = scrape(client, **bearer())

    for table in ("course_overviews", "course_blocks", "course_relationships"):
        assert value(found, "rows", table=table, state="pending") == rows_of(waiting, table)
        assert value(found, "rows", table=table, state="sending") == 0
        assert value(found, "rows", table=table, state="waiting") == 0
    assert value(found, "rows", table="course_relationships", state="failed") == rows_of(second, "course_relationships")
    assert value(found, "rows", table="course_blocks", state="failed") == 0
    for table in all_tables():  # every table has its series, zero or not
        assert ("clickhouse_outbox_rows", (("state", "pending"), ("table", table.name))) in found
        assert value(found, "deletes", table=table.name, state="pending") == 0
    assert value(found, "failed_batches", kind="insert") == 1
    assert value(found, "failed_batches", kind="delete") == 0
    assert 600 <= value(found, "oldest_unsent_age_seconds") < 660
    assert value(found, "clickhouse_failing") == 0
    assert value(found, "requested_snapshots") == 0

    sent = Batch.objects.filter(status=Batch.Status.SENT)
    assert sent.count() == 5
    assert value(found, "recent_sent_batches") == 5
    assert value(found, "recent_sent_rows") == first.row_count + second.row_count - rows_of(second, "course_relationships")
    assert value(found, "recent_sent_deletes") == 0
    assert value(found, "recent_window_seconds") == 300
    last = max(sent.values_list("sent_at", flat=True))
    assert value(found, "last_sent_timestamp_seconds") == pytest.approx(last.timestamp())
    latencies = [(batch.sent_at - min(entry.created for entry in batch.entries.all())).total_seconds()
                 for batch in sent.prefetch_related("entries")]
    assert value(found, "recent_delivery_latency_max_seconds") == pytest.approx(max(latencies), abs=1e-3)
    assert value(found, "recent_delivery_latency_avg_seconds") == pytest.approx(sum(latencies) / 5, abs=1e-3)

    for verdict in ("absent", "missing", "duplicates", "stale", "never"):
        assert value(found, "differing_subjects", verdict=verdict) == 0
    assert not any(name == "clickhouse_outbox_last_verification_timestamp_seconds" for name, _ in found)
    assert TOKEN.encode() not in client.get(URL, **bearer()).content


def test_a_verification_that_found_a_difference(client, token):
    snapshot = CourseSnapshotFactory(course__blocks=5)
    ended = db_now() - timedelta(hours=3)
    job = DumpJob.objects.create(action=DumpJob.Action.VERIFY, status=DumpJob.Status.DONE, active=None,
                                 origin="periodic", finished_at=ended)
    DumpJob.objects.create(action=DumpJob.Action.VERIFY, status=DumpJob.Status.CANCELLED, active=None,
                           origin="admin", finished_at=ended - timedelta(days=1))  # older: not the latest
    Verdict.objects.create(producer=COURSES.name, subject=snapshot.subject, verdict=Verdict.Kind.MISSING,
                           snapshot=snapshot, checked_at=ended, job=job)
    Verdict.objects.create(producer=COURSES.name, subject="course-v1:Other+C+R", verdict=Verdict.Kind.OK,
                           checked_at=ended, job=job)

    found = scrape(client, **bearer())

    assert value(found, "last_verification_timestamp_seconds") == pytest.approx(ended.timestamp())
    assert value(found, "last_verification_completed") == 1
    assert value(found, "differing_subjects", verdict="missing") == 1
    assert value(found, "differing_subjects", verdict="absent") == 0
    key = CourseKey.from_string(snapshot.subject)
    CourseSnapshotFactory(course__org=key.org, course__course=key.course, course__run=key.run)  # newer: repairs it
    assert value(scrape(client, **bearer()), "differing_subjects", verdict="missing") == 0


def test_an_empty_outbox(client, token):
    found = scrape(client, **bearer())
    assert value(found, "oldest_unsent_age_seconds") == 0
    assert value(found, "recent_sent_rows") == 0 and value(found, "recent_sent_batches") == 0
    assert not any(name.startswith("clickhouse_outbox_recent_delivery") for name, _ in found)
    assert not any(name == "clickhouse_outbox_last_sent_timestamp_seconds" for name, _ in found)
    assert OutboxEntry.objects.count() == 0


# --- who may scrape ------------------------------------------------------------------------


def test_staff_may_scrape(staff_client):
    assert value(scrape(staff_client), "failed_batches", kind="insert") == 0


def test_anonymous_callers_are_refused(client, token):
    response = client.get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"clickhouse_outbox_rows" not in response.content


def test_a_wrong_token_is_refused(client, token):
    for header in (bearer(TOKEN + "x"), bearer(TOKEN[:-1]), bearer(""), {"HTTP_AUTHORIZATION": TOKEN},
                   {"HTTP_AUTHORIZATION": f"Basic {TOKEN}"}):
        assert client.get(URL, **header).status_code == 401, header


def test_the_token_is_not_taken_from_the_url(client, token):
    assert client.get(URL, {"token": TOKEN}).status_code == 401


def test_no_token_set_means_staff_only(client, settings):
    settings.CLICKHOUSE_OUTBOX_MONITORING_TOKEN = ""
    assert client.get(URL, **bearer("")).status_code == 401
    assert client.get(URL, HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_signed_in_learners_are_forbidden(learner_client):
    assert learner_client.get(URL).status_code == 403


def test_only_get(staff_client):
    assert staff_client.post(URL).status_code == 405


def test_openmetrics_when_the_scraper_asks_for_it(client, token):
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families

    BatchFactory(row_count=3)
    response = client.get(URL, HTTP_ACCEPT="application/openmetrics-text; version=1.0.0", **bearer())
    assert response["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    families = {family.name: family for family in openmetrics_families(response.content.decode())}
    [sample] = [s for s in families["clickhouse_outbox_failed_batches"].samples if s.labels == {"kind": "insert"}]
    assert sample.value == 1
