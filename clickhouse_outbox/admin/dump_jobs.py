"""
Full dumps from the admin: start one (all courses, or those changed since a time, or every
subject of other producers), follow its progress, cancel it. The job runs in celery
workers, outside the web request; the page only creates it and reads its progress.
"""

from datetime import timezone as dt_timezone

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from clickhouse_outbox.admin.base import ReadOnlyAdmin, moment
from clickhouse_outbox.dumps.dispatch import dispatch
from clickhouse_outbox.dumps.jobs import (
    DEFAULT_PRODUCERS,
    DumpAlreadyActive,
    cancel_job,
    job_noun,
    job_progress,
    progress_line,
    start_job,
)
from clickhouse_outbox.models import DumpJob, DumpJobItem
from clickhouse_outbox.outbox import registry
from clickhouse_outbox.reconcile.verify import TO_REPAIR, Check
from clickhouse_outbox.text import format_age, plural

#: Failed courses listed on a job's page (the rest are counted).
FAILED_SHOWN = 100


class UtcDateTimeField(forms.DateTimeField):
    """Read and shown in UTC, as the form says, whatever the CMS's TIME_ZONE is."""

    def to_python(self, value):
        with timezone.override(dt_timezone.utc):
            return super().to_python(value)

    def prepare_value(self, value):
        with timezone.override(dt_timezone.utc):
            return super().prepare_value(value)


def producer_choices():
    return [(producer.name, f"{producer.noun[1].capitalize()} ({producer.name})") for producer in registry.all_producers()]


class StartDumpForm(forms.Form):
    producers = forms.MultipleChoiceField(
        choices=producer_choices, widget=forms.CheckboxSelectMultiple, initial=list(DEFAULT_PRODUCERS),
        help_text="What to dump: a snapshot of each of their subjects is queued.",
    )
    scope = forms.ChoiceField(
        choices=[(DumpJob.Scope.ALL, "All"), (DumpJob.Scope.CHANGED, "Changed since (courses only)")],
        widget=forms.RadioSelect,
        initial=DumpJob.Scope.ALL,
    )
    changed_since = UtcDateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}, format="%Y-%m-%dT%H:%M:%S"),
        help_text="UTC. Courses published at or after this time are dumped.",
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("scope") == DumpJob.Scope.CHANGED:
            if not cleaned.get("changed_since"):
                self.add_error("changed_since", "Give the time: courses published since then are dumped.")
            if list(cleaned.get("producers") or []) != list(DEFAULT_PRODUCERS):
                self.add_error("scope", "Only courses can be dumped by what changed since a time: the platform "
                                        "keeps no such time for the others.")
        return cleaned


@admin.register(DumpJob)
class DumpJobAdmin(ReadOnlyAdmin):
    list_display = ("id", "action", "description", "status", "progress", "requested_by", "origin", "when_created",
                    "when_finished")
    list_filter = ("action", "status", "scope", "producers", "origin")
    fields = ("action", "description", "status", "progress", "requested_by", "origin", "when_created",
              "when_started", "when_finished", "error", "failed_courses", "repair_job")
    readonly_fields = fields
    actions = ["cancel_selected"]

    def get_urls(self):
        return [
            path("start/", self.admin_site.admin_view(self.start_view), name="clickhouse_outbox_dumpjob_start"),
            path("<int:job_id>/cancel/", self.admin_site.admin_view(self.cancel_view),
                 name="clickhouse_outbox_dumpjob_cancel"),
            path("verify/", self.admin_site.admin_view(self.verify_view), name="clickhouse_outbox_dumpjob_verify"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_start_dump": self.has_start_dump_permission(request)}
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_cancel_dump": self.has_cancel_dump_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    # -- starting and cancelling -----------------------------------------------------------

    def start_view(self, request):
        if not self.has_start_dump_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = StartDumpForm(request.POST)
            if request.POST.get("producers") is None and "scope" in request.POST:  # the course view's button
                form = StartDumpForm({**request.POST.dict(), "producers": list(DEFAULT_PRODUCERS)})
            if form.is_valid():
                return self.start(request, form.cleaned_data["scope"], form.cleaned_data["changed_since"],
                                  form.cleaned_data["producers"])
        else:
            last = DumpJob.objects.filter(status=DumpJob.Status.DONE).order_by("-started_at").first()
            chosen = list(DEFAULT_PRODUCERS)
            if request.GET.get("producers") == "other":
                chosen = [p.name for p in registry.enabled_producers() if p.name not in DEFAULT_PRODUCERS]
            form = StartDumpForm(initial={
                "producers": chosen,
                "scope": request.GET.get("scope", DumpJob.Scope.ALL),
                "changed_since": last.started_at if last else None,
            })
        context = {
            **self.admin_site.each_context(request),
            "title": "Start a full dump",
            "opts": self.model._meta,
            "form": form,
            "active": DumpJob.objects.filter(active=True).first(),
        }
        return TemplateResponse(request, "admin/clickhouse_outbox/dumpjob/start.html", context)

    def start(self, request, scope, changed_since, producers=DEFAULT_PRODUCERS):
        try:
            job = start_job(scope, producers=producers,
                            changed_since=changed_since if scope == DumpJob.Scope.CHANGED else None,
                            origin="admin", user=request.user)
        except DumpAlreadyActive as exc:
            self.message_user(request, str(exc), messages.ERROR)
            target = exc.job.pk if exc.job else None
            return HttpResponseRedirect(self.job_url(target) if target else reverse(
                "admin:clickhouse_outbox_dumpjob_changelist"))
        self.log_addition(request, job, f"Started a dump of {job.description}")
        transaction.on_commit(lambda: dispatch(job))
        self.message_user(
            request,
            f"Dump job {job.pk} started: {job.description}. Celery workers take a snapshot of each {job_noun(job)[0]}; "
            "this page shows their progress.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(self.job_url(job.pk))

    def verify_view(self, request):
        """
        Start a verification of every course (or of every other producer's subjects), in the
        background. With `repair` it ends in a dump job of what differs: that needs the
        permission to start dumps as well, checked here whatever the form offered.
        """
        if not self.has_verify_permission(request):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        repair = request.POST.get("repair", "") not in ("", "0")
        if repair and not self.has_repair_permission(request):
            raise PermissionDenied
        enabled = [producer.name for producer in registry.enabled_producers()]
        if request.POST.get("producers") == "others":
            chosen = [name for name in enabled if name not in DEFAULT_PRODUCERS]
        else:
            chosen = list(DEFAULT_PRODUCERS)
        if not chosen:
            self.message_user(request, "No producer to verify is on.", messages.WARNING)
            return HttpResponseRedirect(reverse("admin:clickhouse_outbox_dumpjob_changelist"))
        try:
            job = start_job(DumpJob.Scope.ALL, producers=chosen, action=DumpJob.Action.VERIFY,
                            repair=repair, origin="admin", user=request.user)
        except DumpAlreadyActive as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(self.job_url(exc.job.pk) if exc.job else reverse(
                "admin:clickhouse_outbox_dumpjob_changelist"))
        self.log_addition(request, job, f"Started: {job.description}")
        transaction.on_commit(lambda: dispatch(job))
        self.message_user(request, f"Verification {job.pk} started: {job.description}. Celery workers compare what "
                                   "ClickHouse holds with what was delivered; this page shows their progress, and the "
                                   "course view each verdict.", messages.SUCCESS)
        return HttpResponseRedirect(self.job_url(job.pk))

    @staticmethod
    def job_url(job_id):
        return reverse("admin:clickhouse_outbox_dumpjob_change", args=[job_id])

    def cancel_view(self, request, job_id):
        if not self.has_cancel_dump_permission(request):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        return self.cancel(request, [get_object_or_404(DumpJob, pk=job_id)])

    def cancel(self, request, jobs):
        cancelled = [job for job in jobs if cancel_job(job)]
        self.audit(request, cancelled, "Cancelled")
        if cancelled:
            self.message_user(request, f"Cancelled {plural(len(cancelled), 'dump job')}; courses already queued "
                                       "stay queued.", messages.SUCCESS)
        else:
            self.message_user(request, "Nothing to cancel: the job had already ended.", messages.WARNING)
        return HttpResponseRedirect(self.job_url(jobs[0].pk) if len(jobs) == 1 else reverse(
            "admin:clickhouse_outbox_dumpjob_changelist"))

    @admin.action(description="Cancel the selected dump jobs", permissions=["cancel_dump"])
    def cancel_selected(self, request, queryset):
        self.cancel(request, list(queryset))

    # -- what the pages show ---------------------------------------------------------------

    @admin.display(description="dump of")
    def description(self, job):
        return job.description

    @admin.display(description="progress")
    def progress(self, job):
        progress = job_progress(job)
        if job.status == DumpJob.Status.QUEUED:
            return f"waiting for a celery worker to list the {job_noun(job)[1]}"
        handled = progress["done"] + progress["failed"]
        return format_html(
            '<progress value="{}" max="{}" style="vertical-align:middle"></progress> <span class="dump-progress">{}</span>',
            handled, max(progress["total"], 1), progress_line(job, progress),
        )

    @admin.display(description="what failed (a verification: what differs)")
    def failed_courses(self, job):
        failed = job.items.filter(status=DumpJobItem.Status.FAILED).order_by("position")
        listed = list(failed.values_list("subject", "error")[:FAILED_SHOWN])
        count = failed.count()
        if job.action == DumpJob.Action.VERIFY:  # tables verified by key range keep verdicts, not items
            differ = job.verdicts.filter(producer__in=job.cursors.values("producer"), verdict__in=TO_REPAIR)
            count += differ.count()
            listed += [(verdict.subject, Check(verdict.subject, verdict.verdict, details=verdict.details).summary())
                       for verdict in differ.order_by("producer", "id")[:max(FAILED_SHOWN - len(listed), 0)]]
        if not count:
            return "-"
        items = format_html_join("", "<li>{}: {}</li>", listed)
        more = f" and {count - FAILED_SHOWN:,} more" if count > FAILED_SHOWN else ""
        return format_html("<ul>{}</ul>{}", items, more)

    @admin.display(description="created", ordering="created")
    def when_created(self, job):
        return moment(job.created)

    @admin.display(description="started", ordering="started_at")
    def when_started(self, job):
        return moment(job.started_at)

    @admin.display(description="finished", ordering="finished_at")
    def when_finished(self, job):
        if job.finished_at and job.started_at:
            return f"{moment(job.finished_at)}, {format_age((job.finished_at - job.started_at).total_seconds())} after it started"
        return moment(job.finished_at)
