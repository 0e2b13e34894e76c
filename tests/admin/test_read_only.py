"""
Nothing in the outbox can be added, changed or deleted by hand, not even by a superuser
(an unsent row deleted is a publish lost); queued payloads are never shown; and no page
shows the ClickHouse password.
"""

import json

import pytest
from django.forms.models import model_to_dict
from django.urls import reverse
from django.utils.html import escape

from clickhouse_outbox.dumps.jobs import start_job
from clickhouse_outbox.dumps.run import run_job
from clickhouse_outbox.models import Batch, CourseDelivery, DumpJob, OutboxEntry, Snapshot
from clickhouse_outbox.operations.requeue import latest_snapshots
from clickhouse_outbox.outbox.drain import drain
from tests.admin import pages
from tests.admin.helpers import COURSES, drain_with_password, url

pytestmark = pytest.mark.django_db

#: A password no page may show (the test server refuses it, so drains with it record errors).
DISTINCTIVE_PASSWORD = "Quokka-7731-zebra-Passphrase"  # noqa: S105 (not a secret)

MODELS = {"coursedelivery": CourseDelivery, "snapshot": Snapshot, "batch": Batch, "outboxentry": OutboxEntry,
          "dumpjob": DumpJob}


@pytest.fixture
def outbox(add_course, publish, break_course, server_clickhouse, settings):
    """Every kind of object: a course delivered, one failed, one waiting, one unreadable; a dump job done."""
    publish(add_course("Delivered"))
    assert drain().batches_sent == 3
    publish(add_course("Failed"))
    drain_with_password(settings, DISTINCTIVE_PASSWORD, max_attempts=1)
    publish(add_course("Waiting"))
    drain_with_password(settings, DISTINCTIVE_PASSWORD)
    broken = add_course("Unreadable")
    break_course(broken)
    publish(broken)
    job = run_job(start_job(DumpJob.Scope.ALL, origin="outbox_requeue"))
    assert job.status == DumpJob.Status.DONE
    assert Batch.objects.filter(status=Batch.Status.FAILED).exists()
    assert Batch.objects.filter(status=Batch.Status.RETRY).exists()
    return job


def values(obj):
    obj = type(obj).objects.get(pk=obj.pk)
    return {name: (bytes(value) if isinstance(value, memoryview) else value) for name, value in model_to_dict(obj).items()}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_superuser_can_add_change_or_delete_nothing(admin_client, outbox, name):
    model = MODELS[name]
    obj = (latest_snapshots(model=CourseDelivery) if model is CourseDelivery else model.objects.order_by("id")).first()
    before = (model.objects.count(), values(obj))

    changelist = admin_client.get(url(f"{name}_changelist"))
    assert changelist.status_code == 200
    assert pages.parse(changelist).find(id="content").find("a", class_="addlink") is None  # (the sidebar has others)
    assert "delete_selected" not in pages.actions(changelist)

    assert admin_client.get(url(f"{name}_add")).status_code == 403
    assert admin_client.post(url(f"{name}_add"), {"subject": "course-v1:X+Y+Z", "table": "course_blocks"}).status_code == 403

    detail = admin_client.get(url(f"{name}_change", obj.pk))
    assert detail.status_code == 200
    html = pages.parse(detail)
    assert html.find("input", type="submit") is None  # no Save, Save and continue, Save and add another
    assert html.find("a", class_="deletelink") is None
    assert html.find("textarea") is None and html.find("select") is None
    assert [i.attrs["name"] for i in html.find("form", id=f"{name}_form").find_all("input")] == ["csrfmiddlewaretoken"]
    edit = {key: value for key, value in values(obj).items() if isinstance(value, str)}
    edit = {key: "changed by hand" for key in edit} | {"status": "sent", "_save": "Save"}
    assert admin_client.post(url(f"{name}_change", obj.pk), edit).status_code == 403

    assert admin_client.get(url(f"{name}_delete", obj.pk)).status_code == 403
    assert admin_client.post(url(f"{name}_delete", obj.pk), {"post": "yes"}).status_code == 403
    assert admin_client.post(url(f"{name}_changelist"), {
        "action": "delete_selected", "_selected_action": [str(obj.pk)], "index": "0", "post": "yes",
    }).status_code in (200, 302)
    assert (model.objects.count(), values(obj)) == before


def test_entry_pages_show_the_size_of_the_payload_never_the_payload(admin_client, outbox):
    listing = admin_client.get(url("outboxentry_changelist")).content.decode()
    for entry in OutboxEntry.objects.all():
        payload = entry.lines().decode()
        detail = admin_client.get(url("outboxentry_change", entry.pk))
        assert pages.readonly_field(detail, "payload_size") == str(len(bytes(entry.payload)))
        shown = detail.content.decode()
        for line in payload.splitlines():
            row = json.loads(line)
            for secret in (line[:60], line[-60:], *(str(value) for key, value in row.items()
                                                   if key in ("location", "display_name", "xblock_data_json"))):
                if len(secret) < 12:  # too short to be only in a payload ("Text", "Video"...)
                    continue
                for page in (shown, listing):
                    assert secret not in page and escape(secret) not in page, (entry, secret)
        assert "payload" not in [field.removeprefix("field-") for node in pages.parse(detail).iter()
                                 for field in node.classes if field.startswith("field-")]


def every_page(client):
    """The URL of every page of the outbox's admin, with its list filters and searches."""
    yield reverse("admin:index")
    yield reverse("admin:app_list", args=["clickhouse_outbox"])
    yield url("dumpjob_start")
    yield url("dumpjob_start") + "?scope=changed"
    for state in ("", "unreadable", "failed", "waiting", "sending", "pending", "delivered", "dismissed"):
        yield url(COURSES) + (f"?state={state}" if state else "")
    yield url(COURSES) + "?q=Failed"
    yield url("batch_changelist") + "?status__exact=failed"
    yield url("batch_changelist") + "?server_error__exact=1"
    for name, model in MODELS.items():
        yield url(f"{name}_changelist")
        for obj in latest_snapshots(model=CourseDelivery) if model is CourseDelivery else model.objects.all():
            yield url(f"{name}_change", obj.pk)
            yield url(f"{name}_history", obj.pk)


def test_no_page_shows_the_clickhouse_password(admin_client, outbox, settings, clickhouse_server_config):
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG,
                                                         password=DISTINCTIVE_PASSWORD)
    fetched = 0
    for address in every_page(admin_client):
        response = admin_client.get(address)
        assert response.status_code == 200, address
        content = response.content.decode()
        for password in (DISTINCTIVE_PASSWORD, clickhouse_server_config["password"]):
            assert password not in content and escape(password) not in content, address
        fetched += 1
    assert fetched > 40
    # The errors the refused password caused are shown, without it.
    failed = Batch.objects.filter(status=Batch.Status.FAILED).first()
    assert "Wrong password for user outbox" in pages.readonly_field(
        admin_client.get(url("batch_change", failed.pk)), "last_error"
    )
