"""
Every snapshot taken: when, why, how many rows, and for one that could not be taken, the
traceback. The course view shows only each course's latest.
"""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from clickhouse_outbox.admin import actions
from clickhouse_outbox.admin.base import ReadOnlyAdmin, moment, state_badge
from clickhouse_outbox.models import Snapshot
from clickhouse_outbox.operations.delivery import with_delivery


@admin.register(Snapshot)
class SnapshotAdmin(ReadOnlyAdmin):
    list_display = ("id", "subject", "producer", "status", "delivery", "reason", "row_count", "taken")
    # user_id is not shown: a subject names the user where the producer's subjects are users' rows.
    list_filter = ("status", "producer", "reason")
    search_fields = ("subject", "dump_id")
    fields = ("subject", "producer", "status", "delivery", "reason", "dump_id", "time_last_dumped", "row_count",
              "taken", "entries_link", "error")
    readonly_fields = fields
    actions = [actions.requeue_subjects, actions.dismiss_snapshots]

    def get_queryset(self, request):
        return with_delivery(super().get_queryset(request))

    @admin.display(description="delivery", ordering="delivery_state")
    def delivery(self, snapshot):
        return state_badge(snapshot.delivery_state)

    @admin.display(description="taken", ordering="created")
    def taken(self, snapshot):
        return moment(snapshot.created)

    @admin.display(description="outbox entries")
    def entries_link(self, snapshot):
        url = reverse("admin:clickhouse_outbox_outboxentry_changelist") + f"?snapshot__id__exact={snapshot.pk}"
        return format_html('<a href="{}">the entries of this snapshot</a>', url)
