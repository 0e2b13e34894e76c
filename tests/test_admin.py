"""
The Django admin: staff see snapshots, failed sends and entries, and requeue them.
"""

import pytest
from django.urls import reverse

from clickhouse_outbox.models import Batch, OutboxEntry, Snapshot
from clickhouse_outbox.producers.course_structure import snapshot_or_record_failure
from clickhouse_outbox.sources.olx import SAMPLE_COURSE_DIR
from tests.factories import BatchFactory, CourseSnapshotFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("staff", "staff@example.com", "pw")
    client.force_login(user)
    return client


def test_every_list_and_detail_page_renders(staff):
    snapshot = CourseSnapshotFactory()
    entry = snapshot.entries.first()
    batch = BatchFactory(last_error="Code: 27 boom")
    OutboxEntry.objects.filter(pk=entry.pk).update(batch=batch, status=OutboxEntry.Status.BATCHED)
    for model, obj in ((Snapshot, snapshot), (Batch, batch), (OutboxEntry, entry)):
        name = model._meta.model_name
        listing = staff.get(reverse(f"admin:clickhouse_outbox_{name}_changelist"))
        assert listing.status_code == 200
        detail = staff.get(reverse(f"admin:clickhouse_outbox_{name}_change", args=[obj.pk]))
        assert detail.status_code == 200
    failed = staff.get(reverse("admin:clickhouse_outbox_batch_changelist") + "?status__exact=failed")
    assert b"Code: 27 boom" in failed.content
    entry_page = staff.get(reverse("admin:clickhouse_outbox_outboxentry_change", args=[entry.pk]))
    shown = [name for fieldset in entry_page.context["adminform"] for line in fieldset for field in line
             for name in [field.field["name"] if isinstance(field.field, dict) else field.field.name]]
    assert "payload" not in shown and "payload_size" in shown  # its size, not the rows themselves
    assert f"<div class=\"readonly\">{len(bytes(entry.payload))}</div>".encode() in entry_page.content


def test_retry_action_puts_failed_batches_back(staff):
    failed = BatchFactory()
    sent = BatchFactory(status=Batch.Status.SENT, attempts=1)
    response = staff.post(reverse("admin:clickhouse_outbox_batch_changelist"),
                          {"action": "retry", "_selected_action": [failed.pk, sent.pk]}, follow=True)
    assert b"1 batches queued again" in response.content
    failed.refresh_from_db()
    sent.refresh_from_db()
    assert (failed.status, failed.attempts) == (Batch.Status.RETRY, 0)
    assert sent.status == Batch.Status.SENT


def test_take_again_action_requeues_a_course_whose_snapshot_failed(staff, olx_dir, olx_source):
    course_key = "course-v1:OpenedX+DemoX+2026_T1"
    failed = snapshot_or_record_failure(course_key, "published")  # not in the course folder yet
    assert failed.status == Snapshot.Status.FAILED
    olx_source.add_export(SAMPLE_COURSE_DIR)
    response = staff.post(reverse("admin:clickhouse_outbox_snapshot_changelist"),
                          {"action": "take_again", "_selected_action": [failed.pk]}, follow=True)
    assert b"1 courses queued again" in response.content
    assert Snapshot.objects.filter(subject=course_key, status=Snapshot.Status.QUEUED, reason="admin").count() == 1
    failed.refresh_from_db()
    assert failed.status == Snapshot.Status.SUPERSEDED


def test_staff_cannot_add_rows_by_hand(staff):
    for name in ("snapshot", "batch", "outboxentry"):
        assert staff.get(reverse(f"admin:clickhouse_outbox_{name}_add")).status_code == 403
