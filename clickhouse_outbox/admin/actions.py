"""
The actions staff run from the lists: requeue courses (or any producer's subjects), retry
batches now, dismiss the failed snapshots of unknown subjects. Each needs its own permission
(`allowed_permissions`: staff without it neither see the action nor can post it) and is
recorded in the admin's history.
"""

from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from clickhouse_outbox.dumps.dispatch import dispatch
from clickhouse_outbox.dumps.jobs import DumpAlreadyActive, start_job
from clickhouse_outbox.models import Batch, DumpJob, OutboxEntry
from clickhouse_outbox.operations.requeue import dismiss_unknown, retry_now
from clickhouse_outbox.outbox import registry
from clickhouse_outbox.outbox.snapshots import queue_subjects
from clickhouse_outbox.text import about, plural

#: More subjects than this are requeued by a dump job in the background, not in the web request.
REQUEUE_IN_REQUEST = 20


def nouns(names):
    """('course', 'courses') for one producer's names, ('subject', 'subjects') for a mix."""
    return registry.get(names[0]).noun if len(set(names)) == 1 else ("subject", "subjects")


def words(names, count, adjective=""):
    """'3 courses', '1 selected enrollment', or '5 subjects' when the selection mixes producers."""
    one, many = nouns(names)
    prefix = f"{adjective} " if adjective else ""
    return plural(count, prefix + one, prefix + many)


@admin.action(description="Requeue the selected (take a new snapshot)", permissions=["requeue"])
def requeue_subjects(modeladmin, request, queryset):
    selected = list(queryset)
    known = set(registry.names())
    chosen = sorted({(snapshot.producer, snapshot.subject) for snapshot in selected if snapshot.producer in known})
    if not chosen:
        modeladmin.message_user(request, "Nothing selected can be requeued (a retirement or a delete is not "
                                         "taken again).", messages.WARNING)
        return
    names = sorted({name for name, _ in chosen})
    if len(chosen) > REQUEUE_IN_REQUEST:
        try:
            job = start_job(DumpJob.Scope.SELECTED, subjects=chosen, origin="admin", user=request.user)
        except DumpAlreadyActive as exc:
            modeladmin.message_user(request, str(exc), messages.ERROR)
            return
        modeladmin.log_addition(request, job, f"Started a dump of {words(names, len(chosen), 'selected')}")
        modeladmin.audit(request, selected, f"Requeued by dump job {job.pk}")
        dispatch(job)
        url = reverse("admin:clickhouse_outbox_dumpjob_change", args=[job.pk])
        modeladmin.message_user(request, format_html(
            "{} are requeued in the background by <a href=\"{}\">dump job {}</a>.",
            words(names, len(chosen)), url, job.pk,
        ), messages.SUCCESS)
        return
    snapshots, failures = [], []
    for name in names:
        taken, failed = queue_subjects(registry.get(name), [subject for n, subject in chosen if n == name], "admin")
        snapshots += taken
        failures += [(name, subject, error) for subject, error in failed]
    # Recorded on each new snapshot: a subject's page, and its history, is its latest snapshot.
    modeladmin.audit(request, modeladmin.model.objects.filter(pk__in=[s.pk for s in snapshots]),
                     "Requeued: a new snapshot was taken")
    not_requeued = {(name, subject): error for name, subject, error in failures}
    for snapshot in selected:
        if (snapshot.producer, snapshot.subject) in not_requeued:
            modeladmin.log_change(request, snapshot, f"Not requeued: {not_requeued[snapshot.producer, snapshot.subject]}")
    if snapshots:
        rows = sum(snapshot.row_count for snapshot in snapshots)
        modeladmin.message_user(
            request,
            f"{words(names, len(snapshots))} requeued ({plural(rows, 'row')} queued); the next drain sends them.",
            messages.SUCCESS,
        )
    for _, subject, error in failures:
        modeladmin.message_user(request, f"Could not requeue {about(subject, error)}", messages.ERROR)


def retry_batches(modeladmin, request, batches, audited):
    """Make `batches` due now (see `retry_now`), record it on `audited` and tell staff what happened."""
    result = retry_now(Batch.objects.filter(id__in=list(batches.values_list("id", flat=True))))
    modeladmin.audit(request, audited, f"Retry now: {plural(result.retried, 'batch', 'batches')} made due")
    if not result.retried:
        modeladmin.message_user(request, "Nothing to retry: no failed or waiting batch was selected.", messages.WARNING)
        return
    text = f"{plural(result.retried, 'batch', 'batches')} will be sent at the next drain, with the current settings."
    if result.released:
        text += " The wait after a failure of the server was ended too."
    modeladmin.message_user(request, text, messages.SUCCESS)


@admin.action(description="Retry now: send the failed and waiting batches again", permissions=["retry"])
def retry_selected_batches(modeladmin, request, queryset):
    retry_batches(modeladmin, request, queryset, queryset)


@admin.action(description="Retry now: send the selected's failed and waiting batches", permissions=["retry"])
def retry_subjects(modeladmin, request, queryset):
    batches = Batch.objects.filter(
        entries__snapshot__in=list(queryset), entries__status=OutboxEntry.Status.BATCHED
    ).distinct()
    retry_batches(modeladmin, request, batches, queryset)
    return list_without_state_filter(request)


def list_without_state_filter(request):
    """Back to the list, keeping the search but not a state filter the courses just left."""
    query = request.GET.copy()
    query.pop("state", None)
    return HttpResponseRedirect(f"{request.path}?{query.urlencode()}" if query else request.path)


@admin.action(description="Dismiss failed snapshots of subjects the source does not know", permissions=["dismiss"])
def dismiss_snapshots(modeladmin, request, queryset):
    dismissed, kept = dismiss_unknown(queryset)
    names = sorted({snapshot.producer for snapshot in dismissed if snapshot.producer in registry.names()})
    one, unknown = nouns(names) if names else ("subject", "subjects")
    source = registry.get(names[0]).source_noun if len(names) == 1 else "source"
    modeladmin.audit(request, dismissed, f"Dismissed: the {source} does not know the {one}")
    if dismissed:
        modeladmin.message_user(
            request,
            f"Dismissed {plural(len(dismissed), 'failed snapshot')} of unknown {unknown}; "
            "outbox_requeue --failed no longer takes them again.",
            messages.SUCCESS,
        )
    for snapshot, why in kept:
        modeladmin.message_user(request, f"Kept the failed snapshot of {about(snapshot.subject, why)}.",
                                messages.WARNING)
    if not dismissed and not kept:
        modeladmin.message_user(request, "Only failed snapshots can be dismissed.", messages.WARNING)
