"""
Who may do what in the outbox's admin, as one matrix: every list and page, the custom
views (start, verify with and without repair, cancel), and every action posted to every
list it belongs to, for an anonymous visitor, an active user who is not staff and inactive
staff (both holding every permission), and staff holding none of the plugin's permissions,
the view ones, each one alone, each action's with the view ones, verify and dump together,
Django's add/change/delete ones, all of them, or being a superuser.

What each cell needs is declared once (the tables below); the answer and the effect every
user must get follow from them by the rules of Django's admin (`expected`), not from the
code under test. Each cell runs in a savepoint rolled back after it, so every cell meets
the same outbox; what a cell did is read from the database (snapshots, batches, dump jobs,
the admin's history), not from the page.
"""

import uuid
from dataclasses import dataclass

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.db import transaction
from django.urls import reverse

from clickhouse_outbox.dumps.jobs import cancel_job, start_job
from clickhouse_outbox.models import Batch, DumpJob, OutboxEntry, Snapshot
from clickhouse_outbox.operations.requeue import latest_snapshots
from clickhouse_outbox.outbox.claim import claim_batch
from clickhouse_outbox.outbox.enqueue import record_failed_snapshot
from clickhouse_outbox.sources.base import SubjectNotFound
from tests.admin.helpers import url
from tests.learners import enroll, make_learner

pytestmark = pytest.mark.django_db

# -- the declaration: what each list, view and action needs ------------------------------

MODELS = ("snapshot", "coursedelivery", "subjectdelivery", "batch", "outboxentry", "dumpjob", "dumpjobitem", "verdict", "sweptrange")
VIEW_PERMISSIONS = frozenset(f"view_{model}" for model in MODELS)
MODEL_PERMISSIONS = frozenset(f"{verb}_{model}" for verb in ("add", "change", "delete") for model in MODELS)
ACTION_PERMISSIONS = ("requeue_course", "retry_batch", "dismiss_snapshot", "start_dumpjob", "cancel_dumpjob",
                      "start_verification")
EVERY_PERMISSION = VIEW_PERMISSIONS | MODEL_PERMISSIONS | frozenset(ACTION_PERMISSIONS)

#: Who may open a list and its pages: any one of these (Django's admin counts "change" as "view"; the
#: course and learners views list snapshots, so who may see snapshots may see them).
SEE = {
    "coursedelivery": {"view_coursedelivery", "change_coursedelivery", "view_snapshot", "change_snapshot"},
    "subjectdelivery": {"view_subjectdelivery", "change_subjectdelivery", "view_snapshot", "change_snapshot"},
    "snapshot": {"view_snapshot", "change_snapshot"},
    "batch": {"view_batch", "change_batch"},
    "outboxentry": {"view_outboxentry", "change_outboxentry"},
    "dumpjob": {"view_dumpjob", "change_dumpjob"},
}
#: The actions of each list, with the permission each needs (besides seeing the list).
ACTIONS = {
    "coursedelivery": {"requeue_subjects": "requeue_course", "retry_subjects": "retry_batch",
                       "dismiss_snapshots": "dismiss_snapshot"},
    "subjectdelivery": {"requeue_subjects": "requeue_course", "retry_subjects": "retry_batch",
                        "dismiss_snapshots": "dismiss_snapshot"},
    "snapshot": {"requeue_subjects": "requeue_course", "dismiss_snapshots": "dismiss_snapshot"},
    "batch": {"retry_selected_batches": "retry_batch"},
    "outboxentry": {},
    "dumpjob": {"cancel_selected": "cancel_dumpjob"},
}
#: What an action does, as read from the database.
DOES = {"requeue_subjects": "requeued", "retry_subjects": "retried", "retry_selected_batches": "retried",
        "dismiss_snapshots": "dismissed", "cancel_selected": "cancelled"}
#: The custom views: (name, method, data, every permission it needs, what it does or the answer of a GET).
FORMS = [
    ("start page", "get", None, {"start_dumpjob"}, 200),
    ("start: all courses", "post", {"scope": "all"}, {"start_dumpjob"}, "dump started"),
    ("start: changed since", "post", {"scope": "changed", "changed_since": "2026-01-02T03:04:05",
                                      "producers": ["course_structure"]}, {"start_dumpjob"}, "dump started"),
    ("start: other producers", "post", {"scope": "all", "producers": ["course_enrollment", "user_profile"]},
     {"start_dumpjob"}, "dump started"),
    ("verify page", "get", None, {"start_verification"}, 405),
    ("verify: courses", "post", {"producers": "courses"}, {"start_verification"}, "verification started"),
    ("verify: others", "post", {"producers": "others"}, {"start_verification"}, "verification started"),
    ("verify and repair: courses", "post", {"producers": "courses", "repair": "1"},
     {"start_verification", "start_dumpjob"}, "verification and repair started"),
    ("verify and repair: others", "post", {"producers": "others", "repair": "1"},
     {"start_verification", "start_dumpjob"}, "verification and repair started"),
    ("verify and repair, repair=on", "post", {"producers": "courses", "repair": "on"},
     {"start_verification", "start_dumpjob"}, "verification and repair started"),
    ("cancel page", "get", None, {"cancel_dumpjob"}, 405),
    ("cancel", "post", {}, {"cancel_dumpjob"}, "cancelled"),
]

#: The users: (kind, their permissions).
ANONYMOUS, NOT_STAFF, INACTIVE, STAFF, SUPERUSER = "anonymous", "not staff", "inactive", "staff", "superuser"
WHO = {
    "anonymous": (ANONYMOUS, frozenset()),
    "not staff, every permission": (NOT_STAFF, EVERY_PERMISSION),
    "inactive staff, every permission": (INACTIVE, EVERY_PERMISSION),
    "staff, no permission": (STAFF, frozenset()),
    "staff, view only": (STAFF, VIEW_PERMISSIONS),
    **{f"staff, {name} alone": (STAFF, frozenset({name})) for name in sorted(VIEW_PERMISSIONS)},
    "staff, change_snapshot alone": (STAFF, frozenset({"change_snapshot"})),
    **{f"staff, {name} alone": (STAFF, frozenset({name})) for name in ACTION_PERMISSIONS},
    **{f"staff, view and {name}": (STAFF, VIEW_PERMISSIONS | {name}) for name in ACTION_PERMISSIONS},
    "staff, start_verification and start_dumpjob": (STAFF, frozenset({"start_verification", "start_dumpjob"})),
    "staff, add, change and delete": (STAFF, MODEL_PERMISSIONS),
    "staff, every permission": (STAFF, EVERY_PERMISSION),
    "superuser": (SUPERUSER, EVERY_PERMISSION),
}


# -- the cells, and what each user must get in each: from the declaration alone ----------------


@dataclass(frozen=True)
class Cell:
    name: str
    method: str
    address: object  # world -> URL
    data: object = None  # world -> POST data
    listed: str = ""  # a page's or an action's list
    action: str = ""  # an action's name
    form: tuple = ()  # a custom view's line of FORMS
    setup: object = None  # what the cell adds to the world, in its savepoint


def running_job():
    return {"job": start_job(DumpJob.Scope.ALL, origin="outbox_requeue")}


def rows(listed):
    """Every row of a list (what "select all" posts)."""
    if listed == "coursedelivery":
        return latest_snapshots("course_structure")
    if listed == "subjectdelivery":
        return latest_snapshots().exclude(producer="course_structure")
    return {"snapshot": Snapshot, "batch": Batch, "outboxentry": OutboxEntry, "dumpjob": DumpJob}[listed].objects.all()


def every_row(listed, action):
    return lambda world: {"action": action, "index": "0",
                          "_selected_action": [str(pk) for pk in rows(listed).values_list("pk", flat=True)]}


def cells():
    found = []
    for listed in SEE:
        found.append(Cell(f"{listed} list", "get", lambda w, n=listed: url(f"{n}_changelist"), listed=listed))
        found.append(Cell(f"{listed} page", "get", lambda w, n=listed: url(f"{n}_change", w[n]), listed=listed))
        found.extend(
            Cell(f"{listed} action {action}", "post", lambda w, n=listed: url(f"{n}_changelist"),
                 data=every_row(listed, action), listed=listed, action=action,
                 setup=running_job if action == "cancel_selected" else None)
            for action in ACTIONS[listed]
        )
    for form in FORMS:
        name, method, data = form[:3]
        view = name.split()[0].rstrip(":")
        found.append(Cell(
            name, method,
            (lambda w: url("dumpjob_cancel", w["job"])) if view == "cancel" else (lambda w, v=view: url(f"dumpjob_{v}")),
            data=None if data is None else (lambda w, d=data: d), form=form,
            setup=running_job if view == "cancel" else None,
        ))
    return found


CELLS = cells()


def expected(cell, who):
    """What `who` must get in `cell`: the answer, what changed, whether the admin's history recorded it."""
    kind, holds = WHO[who]
    if kind in (ANONYMOUS, NOT_STAFF, INACTIVE):
        return outcome("login page")  # the admin lets in active staff only
    sees = bool(SEE.get(cell.listed, set()) & holds)
    if cell.form:
        _, method, _, needs, does = cell.form
        if not needs <= holds:
            return outcome(403)
        return outcome(does) if method == "get" else outcome(302, does, history=True)
    if not cell.action:
        return outcome(200 if sees else 403)
    # An action: the list needs seeing; then Django's admin runs it only for a user who may, and otherwise
    # shows the list again (when it offers the user no action at all) or goes back to it ("No action selected").
    if not sees:
        return outcome(403)
    if ACTIONS[cell.listed][cell.action] in holds:
        return outcome(302, DOES[cell.action], history=True)
    return outcome(302 if set(ACTIONS[cell.listed].values()) & holds else 200)


def outcome(answer, effect=None, history=False):
    return f"{answer}; {effect or 'nothing changed'}" + ("; recorded in the history" if history else "")


# -- the outbox every cell meets, and what a cell did ---------------------------------------


@pytest.fixture
def world(add_course, publish):
    """A course and a learner whose batches failed, a pending course, an unknown course and profile, a finished job."""
    failed = add_course("Failed", blocks=3)
    publish(failed)
    learner = make_learner()
    enroll(learner)
    owner = uuid.uuid4()
    while claim_batch(owner):
        pass
    Batch.objects.update(status=Batch.Status.FAILED, lease_owner=None, lease_expires_at=None)
    pending = publish(add_course("Pending", blocks=3))
    publish("course-v1:AdminX+Gone+2026")  # the course source does not know it: a failed snapshot
    record_failed_snapshot("user_profile", "987654", SubjectNotFound("no user profile 987654"), dump_id=uuid.uuid4())
    job = start_job(DumpJob.Scope.ALL, origin="outbox_requeue")
    cancel_job(job)
    learners = latest_snapshots().exclude(producer="course_structure")
    assert Batch.objects.filter(status=Batch.Status.FAILED).count() >= 4
    return {
        "coursedelivery": pending.pk, "subjectdelivery": learners.first().pk, "snapshot": pending.pk,
        "batch": Batch.objects.first().pk, "outboxentry": OutboxEntry.objects.first().pk, "dumpjob": job.pk,
    }


def state():
    snapshots = Snapshot.objects.values_list("id", "status", "reason")
    return {
        "snapshots": {pk: status for pk, status, _ in snapshots},
        "admin snapshots": {pk for pk, _, reason in snapshots if reason == "admin"},
        "batches": dict(Batch.objects.values_list("id", "status")),
        "jobs": {row[0]: row[1:] for row in DumpJob.objects.values_list("id", "status", "action", "repair", "origin")},
        "history": LogEntry.objects.count(),
    }


def effects(before, after):
    """What changed, in the words of the declaration ("requeued", "dump started"...); anything else by name."""
    found = set()
    new = after["snapshots"].keys() - before["snapshots"].keys()
    if new:
        found.add("requeued" if new <= after["admin snapshots"] else f"snapshots {sorted(new)} taken")
    for pk, status in after["snapshots"].items():
        if pk in before["snapshots"] and status != before["snapshots"][pk]:
            change = (before["snapshots"][pk], status)
            if change == (Snapshot.Status.FAILED, Snapshot.Status.DISMISSED):
                found.add("dismissed")
            elif not ("requeued" in found and status == Snapshot.Status.SUPERSEDED):
                found.add(f"snapshot {pk} {change[0]} -> {change[1]}")
    for pk, status in after["batches"].items():
        change = (before["batches"].get(pk), status)
        if change == (Batch.Status.FAILED, Batch.Status.RETRY):
            found.add("retried")
        elif change[0] != status:
            found.add(f"batch {pk} {change[0]} -> {status}")
    for pk, (status, action, repair, origin) in after["jobs"].items():
        if pk not in before["jobs"]:
            if origin != "admin":
                found.add(f"job {pk} from {origin}")
            elif action == DumpJob.Action.DUMP:
                found.add("dump started")
            else:
                found.add("verification and repair started" if repair else "verification started")
        elif status != before["jobs"][pk][0]:
            found.add("cancelled" if status == DumpJob.Status.CANCELLED else f"job {pk} {status}")
    return found


def observe(client, cell, world):
    with transaction.atomic():
        here = {**world, **(cell.setup() if cell.setup else {})}
        here = {key: getattr(value, "pk", value) for key, value in here.items()}
        before = state()
        kwargs = {"data": cell.data(here)} if cell.data else {}
        response = getattr(client, cell.method)(cell.address(here), **kwargs)
        after = state()
        transaction.set_rollback(True)
    client.cookies.pop("messages", None)  # each cell's messages are its own
    answer = response.status_code
    if answer == 302 and response["Location"].startswith(reverse("admin:login")):
        answer = "login page"
    return outcome(answer, ", ".join(sorted(effects(before, after))), history=after["history"] > before["history"])


def log_in(client, django_user_model, who):
    kind, holds = WHO[who]
    if kind == ANONYMOUS:
        return
    if kind == SUPERUSER:
        user = django_user_model.objects.create_superuser("matrix", "matrix@example.com", None)
    else:
        user = django_user_model.objects.create_user("matrix", "matrix@example.com", None,
                                                     is_staff=kind in (STAFF, INACTIVE), is_active=kind != INACTIVE)
        permissions = Permission.objects.filter(content_type__app_label="clickhouse_outbox", codename__in=holds)
        user.user_permissions.set(permissions)
        assert permissions.count() == len(holds), sorted(holds - set(permissions.values_list("codename", flat=True)))
    client.force_login(user)


# -- the tests ----------------------------------------------------------------------------------


def test_the_matrix_covers_every_permission_of_the_plugin():
    """A permission added to the models without a place in the matrix would go untested."""
    found = set(Permission.objects.filter(content_type__app_label="clickhouse_outbox").values_list("codename",
                                                                                                  flat=True))
    assert found == EVERY_PERMISSION


@pytest.mark.parametrize("who", WHO)
def test_every_page_and_action_answers_each_user_as_declared(client, django_user_model, world, who):
    log_in(client, django_user_model, who)
    seen = {cell.name: observe(client, cell, world) for cell in CELLS}
    assert seen == {cell.name: expected(cell, who) for cell in CELLS}
