"""
Where each subject's rows are: one row per subject (its latest snapshot) with its delivery
state, and a summary of the whole outbox above it.

    Courses             the page that answers "did course X reach ClickHouse?"
    Learners and tags   the same for every other producer (enrollments, user profiles,
                        external ids, tags), and the retirements and deletes, by producer
"""

from urllib.parse import urlencode

from django.contrib import admin
from django.db.models import Case, IntegerField, JSONField, OuterRef, Q, Subquery, Value, When
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from clickhouse_outbox import conf
from clickhouse_outbox.admin import actions
from clickhouse_outbox.admin.base import ReadOnlyAdmin, moment, state_badge
from clickhouse_outbox.clickhouse.errors import describe_failure
from clickhouse_outbox.dumps.jobs import progress_line
from clickhouse_outbox.models import CourseDelivery, OutboxEntry, Snapshot, SubjectDelivery, Verdict
from clickhouse_outbox.operations import range_verdicts
from clickhouse_outbox.operations.delivery import State, with_delivery
from clickhouse_outbox.operations.requeue import latest_snapshots
from clickhouse_outbox.operations.status import ROW_STATES, outbox_status
from clickhouse_outbox.outbox import registry
from clickhouse_outbox.producers.course_structure import PRODUCER
from clickhouse_outbox.reconcile.verify import TO_REPAIR, describe
from clickhouse_outbox.text import format_age, last_line, plural

#: Most urgent first: the default order of the course view.
URGENCY = [State.UNREADABLE, State.REJECTED, State.FAILED, State.WAITING, State.SENDING, State.PENDING, State.REQUESTED,
           State.DELIVERED, State.DELETED, State.DISMISSED]


class StateFilter(admin.SimpleListFilter):
    """Filter by delivery state; dismissed courses (unknown keys) only when asked for."""

    title = "delivery state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [(state.value, state.label) for state in URGENCY]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset.exclude(delivery_state=State.DISMISSED)
        return queryset.filter(delivery_state=self.value())


class VerdictFilter(admin.SimpleListFilter):
    """
    By what the last verification found: "missing in ClickHouse" and the rest. A subject with
    no verdict that a whole-table verification walked past was found ok (no verdict is kept of
    those: `operations.range_verdicts`).
    """

    title = "last verification"
    parameter_name = "verified"

    def lookups(self, request, model_admin):
        return [(kind.value, kind.label) for kind in Verdict.Kind] + [("none", "Never verified")]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        if self.value() not in (Verdict.Kind.OK, "none"):
            return queryset.filter(verdict=self.value())
        # `range_job` (DeliveryAdmin.get_queryset): the newest verification whose cursor passed the subject.
        if self.value() == "none":
            return queryset.filter(verdict__isnull=True, range_job__isnull=True)
        return queryset.filter(Q(verdict=Verdict.Kind.OK) | Q(verdict__isnull=True, range_job__isnull=False))


class DeliveryAdmin(ReadOnlyAdmin):
    """One row per subject: its latest snapshot, with the delivery state of its rows and the last verdict."""

    list_filter = (StateFilter, VerdictFilter)
    search_fields = ("subject",)
    actions = [actions.requeue_subjects, actions.retry_subjects, actions.dismiss_snapshots]
    readonly_fields = ()
    list_per_page = 50
    title = ""

    def has_view_permission(self, request, obj=None):
        """The rows are snapshots: who may view snapshots (Django: *view* or *change*) may view deliveries."""
        return (request.user.has_perm("clickhouse_outbox.view_snapshot")
                or request.user.has_perm("clickhouse_outbox.change_snapshot")
                or super().has_view_permission(request, obj))

    def latest(self):
        raise NotImplementedError

    def get_queryset(self, request):
        urgency = Case(*[When(delivery_state=state.value, then=Value(rank)) for rank, state in enumerate(URGENCY)],
                       default=Value(len(URGENCY)), output_field=IntegerField())
        verdict = Verdict.objects.filter(producer=OuterRef("producer"), subject=OuterRef("subject"))
        return range_verdicts.with_range_check(with_delivery(self.latest())).annotate(
            urgency=urgency,
            verdict=Subquery(verdict.values("verdict")[:1]),
            verified_at=Subquery(verdict.values("checked_at")[:1]),
            verdict_snapshot=Subquery(verdict.values("snapshot_id")[:1]),
            verdict_details=Subquery(verdict.values("details")[:1], output_field=JSONField()),
        )

    def get_ordering(self, request):
        return ("urgency", "subject")

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def changelist_view(self, request, extra_context=None):
        status = outbox_status()
        extra_context = {
            **(extra_context or {}),
            "title": self.title,
            "outbox": status,
            "server_wait": server_wait(status),
            "stale": (status.oldest_unsent_age or 0) > conf.status_max_age_secs(),
            "dump_progress": progress_line(status.active_dump, status.dump_progress) if status.active_dump else "",
            "totals": {state: f"{status.total(state):,}" for state in ROW_STATES},
            "delete_totals": {state: f"{status.total_deletes(state):,}" for state in ROW_STATES},
            "has_deletes": any(status.total_deletes(state) for state in ROW_STATES),
            "oldest_age": format_age(status.oldest_unsent_age) if status.oldest_unsent_at else None,
            "last_sent": moment(status.last_sent_at, status.checked_at) if status.last_sent_at else None,
            "can_start_dump": self.has_start_dump_permission(request),
            "can_verify": self.has_verify_permission(request),
            "can_repair": self.has_repair_permission(request),
            "verify_url": reverse("admin:clickhouse_outbox_dumpjob_verify"),
            "verify_producers": self.verify_producers,
            "start_dump_url": reverse("admin:clickhouse_outbox_dumpjob_start"),
            "dump_url": reverse("admin:clickhouse_outbox_dumpjob_change", args=[status.active_dump.pk])
            if status.active_dump else None,
        }
        return super().changelist_view(request, extra_context)

    @admin.display(description="course", ordering="subject")
    def course(self, delivery):
        return delivery.subject

    @admin.display(description="subject", ordering="subject")
    def subject_name(self, delivery):
        return delivery.subject

    @admin.display(description="last verified", ordering="verified_at")
    def verified(self, delivery):
        if not delivery.verdict:
            if delivery.range_job is None:
                return "-"
            when = moment(delivery.range_checked_at) if delivery.range_checked_at else "under way"
            return f"{Verdict.Kind.OK.label}, {when} (whole-table verification {delivery.range_job})"
        text = Verdict.Kind(delivery.verdict).label
        if delivery.verdict in TO_REPAIR and delivery.verdict != Verdict.Kind.NEVER:
            text += f" ({describe(delivery.verdict_details or {})})"
        text += f", {moment(delivery.verified_at)}"
        if delivery.verdict_snapshot not in (None, delivery.pk):
            text += " (an earlier snapshot)"
        return text

    @admin.display(description="delivery", ordering="urgency")
    def state(self, delivery):
        state = State(delivery.delivery_state)
        if state == State.DELIVERED and delivery.delivered_at:
            return state_badge(state, f"Delivered at {moment(delivery.delivered_at)}")
        if state == State.WAITING and delivery.next_attempt_at:
            return state_badge(state, f"Waiting to retry (next attempt {moment(delivery.next_attempt_at)})")
        return state_badge(state)

    @admin.display(description="latest snapshot", ordering="created")
    def taken(self, delivery):
        return f"{moment(delivery.created)}, {delivery.reason or '-'}"

    @admin.display(description="last error")
    def error_in_words(self, delivery):
        if delivery.delivery_state == State.UNREADABLE:
            return f"The {producer_noun(delivery.producer)} could not be read: {last_line(delivery.error)}"
        if delivery.batch_error and delivery.delivery_state in (State.FAILED, State.WAITING):
            meaning = describe_failure(code=delivery.batch_error_code, http_status=delivery.batch_http_status,
                                       server_error=bool(delivery.batch_server_error))
            return f"{meaning} {delivery.batch_error[:200]}"
        return "-"

    @admin.display(description="rows", ordering="row_count")
    def rows(self, delivery):
        return f"{delivery.row_count:,}"

    @admin.display(description="batches")
    def batches(self, delivery):
        count = delivery.batch_count or 0
        if not count:
            return "-"
        url = reverse("admin:clickhouse_outbox_batch_changelist") + "?" + urlencode({"q": delivery.subject})
        return format_html('<a href="{}">{}</a>', url, plural(count, "batch", "batches"))

    @admin.display(description="rows per table")
    def delivery(self, delivery):
        entries = (
            OutboxEntry.objects.filter(snapshot=delivery)
            .exclude(status__in=[OutboxEntry.Status.SUPERSEDED, OutboxEntry.Status.SPLIT])
            .select_related("batch")
            .order_by("table", "id")
        )
        rows = []
        for entry in entries.defer("payload"):
            batch = entry.batch
            if batch is None:
                rows.append((entry.table, f"{entry.row_count:,}", "pending", "-", "-", "-"))
                continue
            link = format_html('<a href="{}">batch {}</a>',
                               reverse("admin:clickhouse_outbox_batch_change", args=[batch.pk]), batch.pk)
            when = moment(batch.sent_at) if batch.sent_at else moment(batch.next_attempt_at)
            rows.append((entry.table, f"{entry.row_count:,}", batch.get_status_display(), link,
                         f"{batch.attempts} ({batch.attempts_left} left)", when))
        if not rows:
            return "-"
        header = format_html_join("", "<th>{}</th>", ((name,) for name in (
            "table", "rows", "state", "batch", "attempts", "sent / next")))
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
        return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", header, body)

    @admin.display(description="earlier snapshots")
    def earlier_snapshots(self, delivery):
        query = {"q": delivery.subject, "producer__exact": delivery.producer}
        url = reverse("admin:clickhouse_outbox_snapshot_changelist") + "?" + urlencode(query)
        return format_html('<a href="{}">every snapshot of this subject</a>', url)


@admin.register(CourseDelivery)
class CourseDeliveryAdmin(DeliveryAdmin):
    list_display = ("course", "state", "taken", "rows", "error_in_words", "batches", "verified")
    verify_producers = "courses"
    fields = ("course", "state", "error_in_words", "taken", "reason", "dump_id", "time_last_dumped", "row_count",
              "delivery", "error", "earlier_snapshots")
    title = "Courses: where each course's rows are"

    def latest(self):
        return latest_snapshots(PRODUCER, model=CourseDelivery)


class ProducerFilter(admin.SimpleListFilter):
    """By producer: enrollments, user profiles... and the retirements and deletes."""

    title = "producer"
    parameter_name = "producer"

    def lookups(self, request, model_admin):
        found = Snapshot.objects.exclude(producer=PRODUCER).values_list("producer", flat=True).distinct().order_by()
        return [(name, name) for name in sorted(set(found))]

    def queryset(self, request, queryset):
        return queryset.filter(producer=self.value()) if self.value() else queryset


@admin.register(SubjectDelivery)
class SubjectDeliveryAdmin(DeliveryAdmin):
    """Every producer but courses: one row per enrollment, user profile, external id, tag... and per retirement."""

    list_display = ("subject_name", "producer", "state", "taken", "rows", "error_in_words", "batches", "verified")
    list_filter = (ProducerFilter, StateFilter, VerdictFilter)
    verify_producers = "others"
    fields = ("subject_name", "producer", "state", "error_in_words", "taken", "reason", "dump_id",
              "time_last_dumped", "row_count", "delivery", "error", "earlier_snapshots")
    title = "Learners and tags: where each subject's rows are"

    def latest(self):
        return latest_snapshots(model=SubjectDelivery).exclude(producer=PRODUCER)


def producer_noun(name):
    try:
        return registry.get(name).noun[0]
    except registry.UnknownProducer:
        return "subject"


def server_wait(status):
    """Why new rows wait, when a batch waits out a failure of ClickHouse itself."""
    batch = status.server_failure
    if batch is None:
        return ""
    if batch.next_attempt_at and batch.next_attempt_at > status.checked_at:
        return (f"ClickHouse is failing: new rows wait until batch {batch.pk} gets through; "
                f"next attempt {moment(batch.next_attempt_at, status.checked_at)}")
    return f"ClickHouse failed at the last attempt: the next drain tries batch {batch.pk} first"
