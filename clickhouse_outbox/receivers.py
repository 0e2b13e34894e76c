"""
Signal receivers: each change queues its rows (or its deletes) in the transaction that
makes the change, never after it commits (a process that dies in between would lose them).

    a course published, imported or re-run       course_structure (or a request, SNAPSHOT_AT = "drain")
    an enrollment created or changed             course_enrollment (openedx-events, LMS)
    a user's profile saved, or the user          user_profile, external_id
    an external id saved                         external_id
    a taxonomy, tag or object tag saved          taxonomy, tag, object_tag (and its course, requested again)
    ... or deleted                               deleted from its table, in order with its inserts
    a user retired (USER_RETIRE_LMS_MISC)        removed from the outbox, deleted from every PII table (outbox.deletes)

`course_published` and `user_retired` are connected by the plugin system (apps.py), the
openedx-events receivers here, and the model signals by `connect_model_receivers` (the
models are the platform's, looked up by `sources.platform`).
"""

import logging
import uuid

from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_init, post_save, pre_delete
from django.dispatch import receiver
from openedx_events.content_authoring.signals import COURSE_IMPORT_COMPLETED, COURSE_RERUN_COMPLETED
from openedx_events.learning.signals import COURSE_ENROLLMENT_CHANGED, COURSE_ENROLLMENT_CREATED

from clickhouse_outbox.outbox import changes, deletes, snapshots
from clickhouse_outbox.outbox.enqueue import record_failed_snapshot
from clickhouse_outbox.outbox.requested import TAGS_CHANGED
from clickhouse_outbox.producers.course_enrollment import ENROLLMENTS
from clickhouse_outbox.producers.course_structure import COURSES, snapshot_or_request
from clickhouse_outbox.producers.external_id import EXTERNAL_IDS
from clickhouse_outbox.producers.tags import OBJECT_TAGS, TAGS, TAXONOMIES
from clickhouse_outbox.producers.user_profile import PROFILES
from clickhouse_outbox.sources.keys import course_key_of
from clickhouse_outbox.sources.platform import get_model

log = logging.getLogger(__name__)

#: Where a model instance about to be deleted keeps what its deletion changes (pre_delete → post_delete).
PENDING_CHANGES = "_clickhouse_outbox_changes"


# -- courses ---------------------------------------------------------------------------------


def course_published(sender, course_key, **kwargs):  # pylint: disable=unused-argument
    """The modulestore's COURSE_PUBLISHED: queue the published course."""
    if COURSES.enabled:
        snapshot_or_request(course_key, "published")


@receiver(COURSE_IMPORT_COMPLETED, dispatch_uid="clickhouse_outbox.course_import_completed")
def course_import_completed(signal, sender, course, **kwargs):  # pylint: disable=unused-argument
    if COURSES.enabled:
        snapshot_or_request(course.course_key, "imported")


@receiver(COURSE_RERUN_COMPLETED, dispatch_uid="clickhouse_outbox.course_rerun_completed")
def course_rerun_completed(signal, sender, course, **kwargs):  # pylint: disable=unused-argument
    if COURSES.enabled:
        snapshot_or_request(course.course_key, "rerun")


# -- enrollments -----------------------------------------------------------------------------


@receiver(COURSE_ENROLLMENT_CREATED, dispatch_uid="clickhouse_outbox.course_enrollment_created")
@receiver(COURSE_ENROLLMENT_CHANGED, dispatch_uid="clickhouse_outbox.course_enrollment_changed")
def enrollment_changed(signal, sender, enrollment, **kwargs):  # pylint: disable=unused-argument
    """
    An enrollment created, activated, deactivated or moved to another mode. The event names
    the user and the course, not the enrollment: the row the platform saved just before in
    this transaction is used as it is (`enrollment_saved`); else it is read, with its user.
    (The platform sends CHANGED then CREATED for a new enrollment: the second finds the row
    queued since its save and adds nothing, see `outbox.changes.saved_row_changed`.)
    """
    if not ENROLLMENTS.enabled:
        return
    user_id, course_key = enrollment.user.id, enrollment.course.course_key
    if changes.saved_row_changed(ENROLLMENTS, ("enrollment", user_id, str(course_key)), "enrollment"):
        return
    found = ENROLLMENTS.find(user_id, course_key)
    if found is None:
        error = LookupError(f"no enrollment of user {user_id} in {course_key} (sent by {signal.event_type})")
        log.error("clickhouse_outbox: %s; recorded as a failed snapshot", error)
        record_failed_snapshot(ENROLLMENTS.name, f"user {user_id} in {course_key}", error, dump_id=uuid.uuid4(),
                               reason="enrollment", user_id=user_id)
        return
    changes.row_saved(ENROLLMENTS, found, "enrollment")


def enrollment_saved(sender, instance, **kwargs):  # pylint: disable=unused-argument
    """
    The enrollment row saved: kept (no statement) for the event the platform sends next in
    the same transaction, which Aspects, and so this plugin, take as the change.
    """
    if ENROLLMENTS.enabled:
        changes.note_saved(("enrollment", instance.user_id, str(instance.course_id)), instance)


# -- users -----------------------------------------------------------------------------------


def user_retired(sender, user, **kwargs):  # pylint: disable=unused-argument
    """
    USER_RETIRE_LMS_MISC: remove the user's personal data from the outbox (always) and delete
    their rows from every PII table (while retirement is on). Not caught: a retirement that
    cannot be recorded must fail the retirement step, which the platform's pipeline runs again.
    """
    deletes.retire_user(user.id)


def profile_saved(sender, instance, **kwargs):  # pylint: disable=unused-argument
    if PROFILES.enabled:
        changes.row_saved(PROFILES, instance, "saved")


def external_id_saved(sender, instance, **kwargs):  # pylint: disable=unused-argument
    if EXTERNAL_IDS.enabled:
        changes.row_saved(EXTERNAL_IDS, instance, "saved")


#: Where a user instance keeps the username it was read with (post_init): an external id's row holds it.
LOADED_USERNAME = "_clickhouse_outbox_username"


def user_loaded(sender, instance, **kwargs):  # pylint: disable=unused-argument
    setattr(instance, LOADED_USERNAME, instance.__dict__.get("username"))


def user_saved(sender, instance, created=False, update_fields=None, **kwargs):  # pylint: disable=unused-argument
    """
    A user's username and email are in their profile's row, the username in their external
    ids': queue those again, from the profile the user has loaded when it has (no read). The
    external ids are read only when the username may have changed.
    """
    if created or (update_fields is not None and set(update_fields) <= {"last_login"}):
        return  # a new user has neither yet; a login changes neither
    if PROFILES.enabled:
        profiles = user_profiles(instance)
        for profile in profiles:
            profile.user = instance
        changes.user_rows_saved(PROFILES, profiles, "user saved")
    username_changed = getattr(instance, LOADED_USERNAME, None) != instance.username
    setattr(instance, LOADED_USERNAME, instance.username)
    if EXTERNAL_IDS.enabled and username_changed and (update_fields is None or "username" in update_fields):
        model = EXTERNAL_IDS.model()
        if model is not None:
            found = list(model._default_manager.select_related("external_id_type").filter(user_id=instance.pk))
            for external_id in found:
                external_id.user = instance
            changes.user_rows_saved(EXTERNAL_IDS, found, "user saved")


def user_profiles(user):
    """The user's profile: the one loaded with the user (select_related, or read before), else read."""
    model = PROFILES.model()
    if model is None:
        return []
    accessor = model._meta.get_field("user").remote_field.get_accessor_name()
    relation = type(user)._meta.get_field(accessor) if accessor else None
    if relation is not None and relation.is_cached(user):
        profile = getattr(user, accessor, None)
        return [] if profile is None else [profile]
    return list(model._default_manager.filter(user_id=user.pk))


def user_deleted(sender, instance, **kwargs):  # pylint: disable=unused-argument
    """A user deleted outright (not retired) takes their personal data along: as a retirement."""
    deletes.retire_user(instance.pk, reason="user deleted")


# -- content tags ----------------------------------------------------------------------------


def tagging_saved(sender, instance, **kwargs):  # pylint: disable=unused-argument
    producer = TAGGING_PRODUCERS[sender._meta.model_name]  # noqa: SLF001
    if producer.enabled:
        snapshots.take_or_request(producer, instance.pk, "saved")
    if producer is OBJECT_TAGS:
        course_tags_changed([instance.object_id])


def tagging_deleting(sender, instance, **kwargs):  # pylint: disable=unused-argument
    """
    Before a taxonomy or tag goes: the object tags that point to it (the deletion sets their
    link to NULL with one UPDATE, sending no signal) are queued again once it is gone.
    """
    link = {"taxonomy": "taxonomy_id", "tag": "tag_id"}.get(sender._meta.model_name)  # noqa: SLF001
    model = get_model("object_tag")
    if link and model is not None:
        setattr(instance, PENDING_CHANGES, list(model._default_manager.filter(**{link: instance.pk})
                                                .values_list("pk", "object_id")))


def tagging_deleted(sender, instance, **kwargs):  # pylint: disable=unused-argument
    producer = TAGGING_PRODUCERS[sender._meta.model_name]  # noqa: SLF001
    if producer.enabled:
        deletes.delete_subject(producer, str(instance.pk))
    affected = getattr(instance, PENDING_CHANGES, [])
    if OBJECT_TAGS.enabled:
        for object_tag_id, _ in affected:
            snapshots.take_or_request(OBJECT_TAGS, object_tag_id, f"{producer.name} deleted")
    course_tags_changed([instance.object_id] if producer is OBJECT_TAGS else [object_id for _, object_id in affected])


def course_tags_changed(object_ids):
    """The courses whose course or block tags changed, requested again: their rows list tag ids."""
    if not COURSES.enabled:
        return
    for course_key in sorted({key for key in map(course_key_of, object_ids) if key is not None}, key=str):
        snapshots.request(COURSES, course_key, TAGS_CHANGED)


TAGGING_PRODUCERS = {"taxonomy": TAXONOMIES, "tag": TAGS, "objecttag": OBJECT_TAGS}


def connect_model_receivers():
    """Connect the model signals of the platform's models that are installed here (called by AppConfig.ready)."""
    connected = []
    for model_name, signal, handler in (
        ("course_enrollment", post_save, enrollment_saved),
        ("user_profile", post_save, profile_saved),
        ("external_id", post_save, external_id_saved),
        ("taxonomy", post_save, tagging_saved),
        ("tag", post_save, tagging_saved),
        ("object_tag", post_save, tagging_saved),
        ("taxonomy", pre_delete, tagging_deleting),
        ("tag", pre_delete, tagging_deleting),
        ("taxonomy", post_delete, tagging_deleted),
        ("tag", post_delete, tagging_deleted),
        ("object_tag", post_delete, tagging_deleted),
    ):
        model = get_model(model_name)
        if model is not None:
            signal.connect(handler, sender=model, dispatch_uid=f"clickhouse_outbox.{model_name}.{handler.__name__}")
            connected.append(f"{model_name} {handler.__name__}")
    user = get_user_model()
    post_init.connect(user_loaded, sender=user, dispatch_uid="clickhouse_outbox.user.user_loaded")
    post_save.connect(user_saved, sender=user, dispatch_uid="clickhouse_outbox.user.user_saved")
    post_delete.connect(user_deleted, sender=user, dispatch_uid="clickhouse_outbox.user.user_deleted")
    return connected
