"""
What every outbox admin shares: nothing can be added, changed or deleted by hand (an
unsent row deleted is a publish lost), each action has a permission of its own, and each
action is recorded in the admin's history.
"""

from datetime import timezone as dt_timezone

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html

from clickhouse_outbox.operations.delivery import State
from clickhouse_outbox.text import format_age

APP = "clickhouse_outbox"
#: The permission each action asks for, by the name `allowed_permissions` uses.
PERMISSIONS = {
    "requeue": f"{APP}.requeue_course",
    "retry": f"{APP}.retry_batch",
    "dismiss": f"{APP}.dismiss_snapshot",
    "start_dump": f"{APP}.start_dumpjob",
    "cancel_dump": f"{APP}.cancel_dumpjob",
    "verify": f"{APP}.start_verification",
}


class ReadOnlyAdmin(admin.ModelAdmin):
    """View-only for everyone, superusers included: detail pages have no Save or Delete."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_requeue_permission(self, request):
        return request.user.has_perm(PERMISSIONS["requeue"])

    def has_retry_permission(self, request):
        return request.user.has_perm(PERMISSIONS["retry"])

    def has_dismiss_permission(self, request):
        return request.user.has_perm(PERMISSIONS["dismiss"])

    def has_start_dump_permission(self, request):
        return request.user.has_perm(PERMISSIONS["start_dump"])

    def has_cancel_dump_permission(self, request):
        return request.user.has_perm(PERMISSIONS["cancel_dump"])

    def has_verify_permission(self, request):
        return request.user.has_perm(PERMISSIONS["verify"])

    def has_repair_permission(self, request):
        """A verification that repairs starts a dump job of what differs: both permissions."""
        return request.user.has_perms([PERMISSIONS["verify"], PERMISSIONS["start_dump"]])

    def audit(self, request, objects, message):
        """One history entry per object an action touched, saying who (the entry's user), what and how many."""
        objects = list(objects)
        for obj in objects:
            self.log_change(request, obj, f"{message} ({len(objects)} in this action)")


def moment(value, now=None):
    """'2026-11-28 23:10:05 UTC (in 4 min)': to the second, with how far it is from now."""
    if value is None:
        return "-"
    now = now or timezone.now()
    delta = (value - now).total_seconds()
    relative = "now" if abs(delta) < 1 else (f"in {format_age(delta)}" if delta > 0 else f"{format_age(-delta)} ago")
    return f"{value.astimezone(dt_timezone.utc):%Y-%m-%d %H:%M:%S} UTC ({relative})"


#: Badge colours by delivery state (admin CSS variables where they exist).
STATE_COLOURS = {
    State.UNREADABLE: "#ba2121",
    State.REJECTED: "#ba2121",
    State.FAILED: "#ba2121",
    State.WAITING: "#b36b00",
    State.SENDING: "#205067",
    State.PENDING: "#205067",
    State.REQUESTED: "#205067",
    State.DELIVERED: "#2a7a2a",
    State.DISMISSED: "#666",
    State.DELETED: "#666",
    State.SUPERSEDED: "#666",
}


def state_badge(state, text=None):
    state = State(state)
    return format_html(
        '<span class="outbox-state outbox-state-{}" style="font-weight:bold;color:{}">{}</span>',
        state.value, STATE_COLOURS[state], text or state.label,
    )
