"""
The Django admin: failed sends, snapshots per course, and the actions that requeue them.
"""

from django.contrib import admin, messages

from clickhouse_outbox.models import Batch, OutboxEntry, Snapshot
from clickhouse_outbox.outbox.requeue import requeue_batches
from clickhouse_outbox.producers.course_structure import queue_courses
from clickhouse_outbox.serializers.course_structure import PRODUCER


@admin.register(Snapshot)
class SnapshotAdmin(admin.ModelAdmin):
    list_display = ("id", "subject", "producer", "status", "reason", "row_count", "time_last_dumped", "created")
    list_filter = ("status", "producer", "reason")
    search_fields = ("subject", "dump_id")
    readonly_fields = [field.name for field in Snapshot._meta.fields]
    actions = ["take_again"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Take a new snapshot of the selected courses")
    def take_again(self, request, queryset):
        subjects = sorted(set(queryset.filter(producer=PRODUCER).values_list("subject", flat=True)))
        snapshots, failures = queue_courses(subjects, "admin")
        self.message_user(request, f"{len(snapshots)} courses queued again.", messages.SUCCESS)
        for subject, error in failures:
            self.message_user(request, f"{subject}: {error}", messages.ERROR)


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = ("id", "table", "status", "row_count", "attempts", "next_attempt_at", "error_code",
                    "short_error", "sent_at")
    list_filter = ("status", "table", "error_code")
    search_fields = ("last_error",)
    readonly_fields = [field.name for field in Batch._meta.fields]
    actions = ["retry"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="last error")
    def short_error(self, batch):
        return batch.last_error[:120]

    @admin.action(description="Retry the selected failed batches now")
    def retry(self, request, queryset):
        self.message_user(request, f"{requeue_batches(queryset)} batches queued again.", messages.SUCCESS)


@admin.register(OutboxEntry)
class OutboxEntryAdmin(admin.ModelAdmin):
    list_display = ("id", "table", "status", "row_count", "snapshot", "batch", "created")
    list_filter = ("status", "table")
    raw_id_fields = ("snapshot", "batch")
    exclude = ("payload",)
    readonly_fields = ("snapshot", "table", "status", "batch", "row_count", "created", "payload_size")

    def has_add_permission(self, request):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).defer("payload")

    @admin.display(description="payload bytes")
    def payload_size(self, entry):
        return len(entry.payload or b"")
