"""
Every INSERT (or delete) the drain made or will make: its table, the subjects it carries,
and its retry bookkeeping. Filter on status "failed" or "waiting to be retried" to see what
needs attention; "retry now" sends them at the next drain.
"""

from urllib.parse import urlencode

from django.contrib import admin
from django.db.models import Count, Max, Min
from django.urls import reverse
from django.utils.html import format_html_join

from clickhouse_outbox.admin import actions
from clickhouse_outbox.admin.base import ReadOnlyAdmin, moment
from clickhouse_outbox.clickhouse.errors import describe_failure
from clickhouse_outbox.models import Batch, OutboxEntry
from clickhouse_outbox.outbox import liveness


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdmin):
    list_display = ("id", "table", "kind", "status", "courses", "row_count", "attempts_made", "next_attempt",
                    "error_code", "short_error", "sent")
    list_filter = ("status", "kind", "table", "error_code", "server_error")
    search_fields = ("entries__snapshot__subject", "last_error")
    fields = ("table", "kind", "status", "course_list", "row_count", "attempts_made", "next_attempt", "error_in_words",
              "last_error", "when_last_error", "http_status", "error_code", "server_error", "token", "lease",
              "when_created", "sent")
    readonly_fields = fields
    actions = [actions.retry_selected_batches]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            course_count=Count("entries__snapshot__subject", distinct=True),
            first_course=Min("entries__snapshot__subject"),
            last_course=Max("entries__snapshot__subject"),
        )

    @admin.display(description="subjects")
    def courses(self, batch):
        if not batch.course_count:
            return "-"
        if batch.course_count == 1:
            return batch.first_course
        return f"{batch.first_course} and {batch.course_count - 1} more"

    @admin.display(description="subjects")
    def course_list(self, batch):
        keys = (OutboxEntry.objects.filter(batch=batch).order_by("snapshot__subject")
                .values_list("snapshot__subject", "snapshot__producer").distinct())
        return format_html_join(
            ", ", '<a href="{}">{}</a>',
            ((delivery_url(producer, key), key) for key, producer in keys),
        ) or "-"

    @admin.display(description="attempts", ordering="attempts")
    def attempts_made(self, batch):
        if batch.status in (Batch.Status.RETRY, Batch.Status.CLAIMED):
            return f"{batch.attempts} ({batch.attempts_left} left)"
        return str(batch.attempts)

    @admin.display(description="next attempt", ordering="next_attempt_at")
    def next_attempt(self, batch):
        return moment(batch.next_attempt_at) if batch.status == Batch.Status.RETRY else "-"

    @admin.display(description="sent", ordering="sent_at")
    def sent(self, batch):
        return moment(batch.sent_at) if batch.sent_at else "-"

    @admin.display(description="last error at", ordering="last_error_at")
    def when_last_error(self, batch):
        return moment(batch.last_error_at)

    @admin.display(description="created", ordering="created")
    def when_created(self, batch):
        return moment(batch.created)

    @admin.display(description="lease")
    def lease(self, batch):
        if batch.status != Batch.Status.CLAIMED:
            return "-"
        held = f"held by drainer {batch.lease_owner} until {moment(batch.lease_expires_at)}"
        if liveness.key_of(batch.lease_owner) is None:
            return held + " (a drainer without a database lock: only the lease's end frees it if that drainer died)"
        if liveness.abandoned({batch.lease_owner}):
            return held + "; that drainer is gone (its database lock is free): the next drain takes the batch"
        return held + "; that drainer is running (it holds its database lock)"

    @admin.display(description="last error")
    def short_error(self, batch):
        return batch.last_error[:160] or "-"

    @admin.display(description="what it means")
    def error_in_words(self, batch):
        if not batch.last_error:
            return "-"
        return describe_failure(code=batch.error_code, http_status=batch.http_status, server_error=batch.server_error)


def delivery_url(producer, subject):
    """The course view (or the learners-and-tags view) searched for `subject`."""
    view = "coursedelivery" if producer == "course_structure" else "subjectdelivery"
    return reverse(f"admin:clickhouse_outbox_{view}_changelist") + "?" + urlencode({"q": subject})
