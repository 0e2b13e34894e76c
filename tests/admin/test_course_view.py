"""
The course view: one row per course with where its rows are, on real data (courses read
from an OLX folder, drains against the real ClickHouse test server), filtered by state,
searched by course key; the summary above it; a course's page.
"""

import uuid
from datetime import UTC, datetime, timedelta

import django
import pytest
from django.db.models import F

from clickhouse_outbox.db import db_now
from clickhouse_outbox.models import Batch, OutboxEntry, Snapshot
from clickhouse_outbox.operations.requeue import dismiss_unknown, retry_now
from clickhouse_outbox.outbox.claim import claim_batch
from clickhouse_outbox.outbox.drain import drain
from clickhouse_outbox.text import last_line
from tests.admin import pages
from tests.admin.helpers import BATCHES, COURSES, ENTRIES, WRONG_PASSWORD, fail_for_good, refused_drain, url

pytestmark = pytest.mark.django_db

STATES = ("unreadable", "failed", "waiting", "sending", "pending", "delivered", "dismissed")
REFUSED = "ClickHouse refused the user name, the password or the user's rights."


def second(value):
    """A time as the admin shows it: UTC, to the second."""
    return f"{value:%Y-%m-%d %H:%M:%S} UTC"


def courses(client, **query):
    return client.get(url(COURSES), query)


def listed(client, **query):
    """The course keys the course view lists for `query`, top to bottom."""
    response = courses(client, **query)
    assert response.status_code == 200
    return pages.column(response, "course")


def filters_listing(client, course_key):
    """The ?state= filters under which the course is listed."""
    return [state for state in STATES if course_key in listed(client, state=state)]


def row(client, course_key):
    return pages.row_of(courses(client), "course", course_key)


def test_a_course_through_every_delivery_state(admin_client, add_course, publish, server_clickhouse, settings):
    key = add_course("Life")
    snapshot = publish(key)
    assert row(admin_client, key)["state"] == "Pending"
    assert row(admin_client, key)["taken"].endswith(", published")
    assert filters_listing(admin_client, key) == ["pending"]

    # A drainer claims the first table's rows: sending.
    batch = claim_batch(uuid.uuid4())
    page = courses(admin_client)
    assert pages.row_of(page, "course", key)["state"] == "Sending"
    assert pages.by_id(page, "summary-sending").text == str(batch.row_count)
    assert pages.by_id(page, "summary-pending").text == str(snapshot.row_count - batch.row_count)
    assert filters_listing(admin_client, key) == ["sending"]

    # That drainer dies; the next drain takes the batch over when its lease ends, and the
    # server refuses the password: the batch waits to retry, at a time shown to the second.
    Batch.objects.filter(pk=batch.pk).update(lease_expires_at=F("lease_expires_at") - timedelta(days=1))
    refused_drain(settings)
    batch.refresh_from_db()
    assert batch.status == Batch.Status.RETRY and batch.server_error
    shown = row(admin_client, key)
    assert shown["state"].startswith(f"Waiting to retry (next attempt {second(batch.next_attempt_at)} (")
    assert shown["error_in_words"].startswith(REFUSED)
    assert "Wrong password for user outbox" in shown["error_in_words"]
    assert shown["batches"] == "1 batch"
    assert filters_listing(admin_client, key) == ["waiting"]

    # Out of attempts: the batch fails for good, and the course with it.
    Batch.objects.filter(pk=batch.pk).update(next_attempt_at=db_now() - timedelta(seconds=1))
    refused_drain(settings, max_attempts=3)
    batch.refresh_from_db()
    assert (batch.status, batch.attempts) == (Batch.Status.FAILED, 3)
    shown = row(admin_client, key)
    assert shown["state"] == "Failed"
    assert shown["error_in_words"].startswith(REFUSED) and "Code: 193" in shown["error_in_words"]
    assert filters_listing(admin_client, key) == ["failed"]

    # The password is right again; once everything is sent, the course is delivered, at the last send.
    assert retry_now().retried == 2
    assert drain().batches_sent == 3
    sent_at = max(Batch.objects.values_list("sent_at", flat=True))
    page = courses(admin_client)
    shown = pages.row_of(page, "course", key)
    assert shown["state"].startswith(f"Delivered at {second(sent_at)} (")
    assert shown["error_in_words"] == "-"
    assert shown["batches"] == "3 batches"
    assert pages.by_id(page, "summary-last-sent").text.startswith(second(sent_at))
    assert filters_listing(admin_client, key) == ["delivered"]
    assert WRONG_PASSWORD not in page.content.decode()


@pytest.fixture
def every_state(add_course, publish, break_course, server_clickhouse, settings):
    """A course in each state but sending (the drain would claim it), by state."""
    keys = {}
    keys["delivered"] = add_course("Delivered")
    publish(keys["delivered"])
    assert drain().batches_sent == 3
    keys["failed"] = add_course("Failed")
    publish(keys["failed"])
    fail_for_good(settings)
    keys["waiting"] = add_course("Waiting")
    publish(keys["waiting"])
    refused_drain(settings)
    keys["pending"] = add_course("Pending")
    publish(keys["pending"])
    keys["unreadable"] = add_course("Unreadable")
    break_course(keys["unreadable"])
    publish(keys["unreadable"])
    keys["dismissed"] = "course-v1:AdminX+Gone+2026"  # published, but the course source never had it
    publish(keys["dismissed"])
    dismissed, _ = dismiss_unknown(Snapshot.objects.filter(subject=keys["dismissed"]))
    assert len(dismissed) == 1
    return keys


def test_courses_are_listed_most_urgent_first_and_dismissed_ones_only_when_asked(admin_client, every_state):
    keys = every_state
    assert listed(admin_client) == [keys[state] for state in ("unreadable", "failed", "waiting", "pending", "delivered")]
    for state in STATES:
        assert listed(admin_client, state=state) == ([keys[state]] if state in keys else []), state
    assert row(admin_client, keys["pending"])["state"] == "Pending"
    assert pages.row_of(courses(admin_client, state="dismissed"), "course", keys["dismissed"])["state"] == "Dismissed"


def test_an_unreadable_course_says_why(admin_client, every_state):
    key = every_state["unreadable"]
    snapshot = Snapshot.objects.get(subject=key)
    shown = row(admin_client, key)
    assert shown["state"] == "Could not be read"
    assert shown["error_in_words"] == f"The course could not be read: {last_line(snapshot.error)}"
    assert "malformed XML" in shown["error_in_words"]
    assert (shown["rows"], shown["batches"]) == ("0", "-")


def test_search_by_course_key_with_and_without_a_state(admin_client, every_state):
    keys = every_state
    assert listed(admin_client, q="Waiting") == [keys["waiting"]]
    assert listed(admin_client, q="adminx+fail") == [keys["failed"]]  # any part of the key, any case
    assert listed(admin_client, q=keys["delivered"]) == [keys["delivered"]]
    assert len(listed(admin_client, q="AdminX")) == 5
    assert listed(admin_client, q="AdminX", state="failed") == [keys["failed"]]
    assert listed(admin_client, q="Waiting", state="failed") == []
    assert listed(admin_client, q="Gone") == []
    assert listed(admin_client, q="Gone", state="dismissed") == [keys["dismissed"]]
    assert listed(admin_client, q="no-such-course") == []


def test_every_column_header_sorts(admin_client, every_state):
    """The list's own links sort by each sortable column, derived states included."""
    everything = sorted(listed(admin_client))
    for order in ("1", "-1", "2", "-2", "3", "-3", "4", "-4"):
        assert sorted(listed(admin_client, o=order)) == everything, order
    assert listed(admin_client, o="1") == everything
    assert listed(admin_client, o="-1") == everything[::-1]


@pytest.mark.skipif(django.VERSION < (5, 0), reason="'Show counts' (facets) came with Django 5.0")
def test_counts_per_state_can_be_shown(admin_client, every_state):
    counted = courses(admin_client, _facets="True")
    assert counted.status_code == 200
    assert sorted(pages.column(counted, "course")) == sorted(listed(admin_client))
    shown = pages.page_text(counted)
    for label in ("Could not be read (1)", "Failed (1)", "Waiting to retry (1)", "Sending (0)", "Pending (1)",
                  "Delivered (1)", "Dismissed (1)"):
        assert label in shown


def test_batches_and_entries_are_searched_by_course_key(admin_client, every_state):
    waiting = every_state["waiting"]
    found = admin_client.get(url(BATCHES), {"q": waiting})
    (batch,) = Batch.objects.filter(status=Batch.Status.RETRY)
    assert pages.column(found, "id") == [str(batch.pk)]
    assert pages.column(found, "courses") == [waiting]
    assert sorted(pages.column(admin_client.get(url(BATCHES), {"q": every_state["failed"]}), "courses")) == [
        every_state["failed"]
    ] * 3
    entries = admin_client.get(url(ENTRIES), {"q": waiting})
    assert pages.column(entries, "course") == [waiting] * OutboxEntry.objects.filter(snapshot__subject=waiting).count()
    assert admin_client.get(url(ENTRIES), {"q": "no-such-course"}).content.decode().count("field-course") == 0


def test_the_summary_counts_what_waits_and_failed_and_says_how_old_and_when(
    admin_client, add_course, publish, break_course, server_clickhouse, settings
):
    delivered = publish(add_course("Delivered"))
    assert drain().batches_sent == 3
    sent_at = (db_now() - timedelta(days=2)).replace(microsecond=0)
    for hours, batch in enumerate(Batch.objects.order_by("-id")):  # the course's batches went out hours apart
        Batch.objects.filter(pk=batch.pk).update(sent_at=sent_at - timedelta(hours=hours))
    failed = publish(add_course("Failed"))
    fail_for_good(settings)
    waiting = publish(add_course("Waiting"))
    refused_drain(settings)
    Batch.objects.filter(status=Batch.Status.RETRY).update(  # a later attempt, so it waits minutes, not seconds
        next_attempt_at=(db_now() + timedelta(minutes=10)).replace(microsecond=0))
    (retrying,) = Batch.objects.filter(status=Batch.Status.RETRY)
    pending = publish(add_course("Pending"))
    unreadable = add_course("Unreadable")
    break_course(unreadable)
    publish(unreadable)
    now = db_now()
    # When each course's rows were queued. Failed rows wait for staff, not for the drain:
    # they are not "unsent rows" whose age says delivery is stuck.
    OutboxEntry.objects.filter(snapshot=failed).update(created=now - timedelta(hours=10))
    OutboxEntry.objects.filter(snapshot=waiting).update(created=now - timedelta(hours=5))
    OutboxEntry.objects.filter(snapshot=pending).update(created=now - timedelta(hours=1))
    OutboxEntry.objects.filter(snapshot=delivered).update(created=now - timedelta(days=3))

    page = courses(admin_client)

    def summary(name):
        return pages.by_id(page, f"summary-{name}").text

    assert summary("pending") == str(pending.row_count + waiting.row_count - retrying.row_count)
    assert summary("sending") == "0"
    assert summary("waiting") == (
        f"{retrying.row_count} (ClickHouse is failing: new rows wait until batch {retrying.pk} gets through; "
        f"next attempt {second(retrying.next_attempt_at)} (in 10 min))"
    )
    assert summary("failed") == f"{failed.row_count} in 3 batches"
    assert summary("unreadable") == "1"
    assert summary("oldest") == "queued 5.0 h ago"
    assert "outbox-problem" in pages.by_id(page, "summary-oldest").find("span").classes  # older than allowed
    assert summary("last-sent") == f"{second(sent_at)} (2.0 days ago)"
    assert pages.row_of(page, "course", delivered.subject)["state"] == f"Delivered at {second(sent_at)} (2.0 days ago)"
    assert summary("dump") == "none running"


def test_the_summary_of_an_outbox_with_nothing_to_send(admin_client):
    page = courses(admin_client)
    assert pages.by_id(page, "summary-pending").text == "0"
    assert pages.by_id(page, "summary-failed").text == "0 in 0 batches"
    assert pages.by_id(page, "summary-oldest").text == "none: no row is pending, being sent or waiting to retry"
    assert pages.by_id(page, "summary-last-sent").text == "never"
    assert pages.rows(page) == []


def test_the_summary_says_its_time_in_utc_whatever_the_time_zone(admin_client, settings):
    """Its caption says "UTC": a CMS whose TIME_ZONE is another must still show UTC there."""
    settings.TIME_ZONE = "America/New_York"
    before = db_now().replace(microsecond=0)
    page = courses(admin_client)
    after = db_now()
    caption = pages.by_id(page, "outbox-summary").find("caption").text
    assert caption.startswith("Outbox, as of ") and caption.endswith(" UTC")
    shown = datetime.strptime(caption.removeprefix("Outbox, as of ").removesuffix(" UTC"), "%Y-%m-%d %H:%M:%S")
    assert before <= shown.replace(tzinfo=UTC) <= after


def test_a_courses_page_shows_where_each_tables_rows_are(admin_client, add_course, publish, server_clickhouse,
                                                         settings):
    key = add_course("Detail")
    snapshot = publish(key)
    refused_drain(settings)
    (batch,) = Batch.objects.all()
    page = admin_client.get(url("coursedelivery_change", snapshot.pk))
    assert page.status_code == 200
    table = pages.parse(page).find(class_="field-delivery").find("table")
    shown = {cells[0]: cells[1:] for cells in (
        [cell.text for cell in tr.find_all("td")] for tr in table.find("tbody").find_all("tr")
    )}
    entries = {entry.table: entry for entry in snapshot.entries.all()}
    assert set(shown) == set(entries)
    assert shown[batch.table][:4] == [str(batch.row_count), "Waiting to be retried", f"batch {batch.pk}",
                                      "1 (11 left)"]
    assert shown[batch.table][4].startswith(f"{second(batch.next_attempt_at)} (")
    for name, entry in entries.items():
        if name != batch.table:
            assert shown[name] == [str(entry.row_count), "pending", "-", "-", "-"]
    assert pages.readonly_field(page, "state").startswith("Waiting to retry (next attempt")
    assert pages.readonly_field(page, "error_in_words").startswith(REFUSED)
    link = pages.parse(page).find(class_="field-earlier_snapshots").find("a")
    assert link.attrs["href"] == url("snapshot_changelist") + "?q=course-v1%3AAdminX%2BDetail%2B2026&producer__exact=course_structure"
