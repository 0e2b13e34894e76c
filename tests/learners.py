"""
Learners, enrollments and tags as the platform makes them: Django's real auth.User, the
project's stand-ins of edx-platform's UserProfile, CourseEnrollment and ExternalId (the
same fields), openedx-events' real enrollment events sent the way edx-platform sends them,
and the real tagging models (openedx-core's, or Ulmo's openedx-learning's: found by their
app label, which both keep).
"""

import json

from django.apps import apps
from django.contrib.auth import get_user_model
from opaque_keys.edx.keys import CourseKey
from openedx_events.learning.data import CourseData, CourseEnrollmentData, UserData, UserPersonalData
from openedx_events.learning.signals import COURSE_ENROLLMENT_CHANGED, COURSE_ENROLLMENT_CREATED

from clickhouse_outbox.models import OutboxEntry, Snapshot
from outbox_project.platform.models import CourseEnrollment, ExternalId, ExternalIdType, UserProfile

COURSE = CourseKey.from_string("course-v1:LearnX+L101+2026")


def make_learner(username="ada", name="Ada Lovelace", **profile):
    """A user and their profile (the platform creates both at registration)."""
    user = get_user_model().objects.create(username=username, email=f"{username}@example.com")
    UserProfile.objects.create(user=user, name=name, **profile)
    return user


def event_data(enrollment):
    """The CourseEnrollmentData edx-platform's CourseEnrollment.update_enrollment sends."""
    user = enrollment.user
    return CourseEnrollmentData(
        user=UserData(id=user.id, is_active=user.is_active,
                      pii=UserPersonalData(username=user.username, email=user.email, name=user.profile.name)),
        course=CourseData(course_key=enrollment.course_id),
        mode=enrollment.mode,
        is_active=enrollment.is_active,
        creation_date=enrollment.created,
    )


def enroll(user, course_key=COURSE, mode="audit"):
    """CourseEnrollment.enroll: the row saved, then COURSE_ENROLLMENT_CHANGED and COURSE_ENROLLMENT_CREATED."""
    enrollment, _ = CourseEnrollment.objects.get_or_create(user=user, course_id=course_key,
                                                           defaults={"mode": mode, "is_active": False})
    enrollment.is_active, enrollment.mode = True, mode
    enrollment.save()
    COURSE_ENROLLMENT_CHANGED.send_event(enrollment=event_data(enrollment))
    COURSE_ENROLLMENT_CREATED.send_event(enrollment=event_data(enrollment))
    return enrollment


def change_enrollment(enrollment, **changes):
    """CourseEnrollment.update_enrollment: the row saved, then COURSE_ENROLLMENT_CHANGED."""
    for name, value in changes.items():
        setattr(enrollment, name, value)
    enrollment.save()
    COURSE_ENROLLMENT_CHANGED.send_event(enrollment=event_data(enrollment))
    return enrollment


def give_external_id(user, kind="xapi"):
    id_type, _ = ExternalIdType.objects.get_or_create(name=kind)
    return ExternalId.objects.create(user=user, external_id_type=id_type)


def tagging_model(name):
    """openedx_tagging's `Taxonomy`, `Tag` or `ObjectTag`, wherever the installed release keeps it."""
    return apps.get_model("oel_tagging", name)


def taxonomy_with_tags(name="Subjects", values=("Science", "Physics")):
    """A taxonomy and a chain of tags, each the child of the one before; returns (taxonomy, [tags])."""
    taxonomy = tagging_model("Taxonomy").objects.create(name=name, export_id=name.lower())
    tags, parent = [], None
    for value in values:
        parent = tagging_model("Tag").objects.create(taxonomy=taxonomy, value=value, parent=parent)
        tags.append(parent)
    return taxonomy, tags


def tag_object(object_id, tag):
    return tagging_model("ObjectTag").objects.create(object_id=str(object_id), taxonomy=tag.taxonomy, tag=tag, _value=tag.value,
                                    _export_id=tag.taxonomy.export_id)


def queued_rows(table, statuses=None):
    """The rows the outbox holds for `table`, decoded, oldest first (pending and batched by default)."""
    statuses = statuses or [OutboxEntry.Status.PENDING, OutboxEntry.Status.BATCHED]
    rows = []
    for entry in OutboxEntry.objects.filter(table=table, kind="insert", status__in=statuses).order_by("id"):
        rows.extend(json.loads(line) for line in entry.lines().splitlines())
    return rows


#: The courses of `site_before_install`'s learners.
RANGE_COURSES = [CourseKey.from_string(f"course-v1:Range+R{n}+2026") for n in (1, 2, 3)]


def site_before_install(count):
    """`count` learners with a profile, an external id and up to three enrollments, and an empty outbox."""
    users = []
    for index in range(count):
        user = make_learner(f"range{index}", f"Learner {index}", city="Ümlautville" if index % 3 else None)
        give_external_id(user)
        for course in RANGE_COURSES[: 1 + index % 3]:
            enroll(user, course)
        users.append(user)
    Snapshot.objects.all().delete()  # made before install: the outbox saw none of it
    return users
