"""
The queued rows (and deletes), per destination table: which snapshot (course, enrollment,
user...) they belong to and which batch carries them. Payloads are never shown (they may
hold a learner's personal data): their size is.
"""

from django.contrib import admin
from django.db.models.functions import Length

from clickhouse_outbox.admin.base import ReadOnlyAdmin, moment
from clickhouse_outbox.models import OutboxEntry


@admin.register(OutboxEntry)
class OutboxEntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "course", "table", "kind", "status", "row_count", "snapshot", "batch", "queued")
    list_filter = ("status", "kind", "table", "snapshot__producer")
    search_fields = ("snapshot__subject",)
    list_select_related = ("snapshot", "batch")
    fields = ("course", "snapshot", "table", "kind", "status", "batch", "row_count", "queued", "payload_size")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).defer("payload").annotate(payload_bytes=Length("payload"))

    @admin.display(description="subject", ordering="snapshot__subject")
    def course(self, entry):
        return entry.snapshot.subject if entry.snapshot_id else "-"

    @admin.display(description="queued", ordering="created")
    def queued(self, entry):
        return moment(entry.created)

    @admin.display(description="payload bytes")
    def payload_size(self, entry):
        return entry.payload_bytes
