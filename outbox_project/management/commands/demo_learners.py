"""
manage.py demo_learners COURSE_KEY: the LMS side of `make demo`, on the standalone project.

Registers three learners (a profile and an xapi external id each), enrolls them in the
course, tags the course with a small taxonomy, moves one learner to the verified mode and
retires another, each change in a transaction of its own as the platform makes it. The
producers queue their rows (and the retirement its deletes) in those transactions. With
--report it prints, instead, what ClickHouse holds for them.
"""

from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from opaque_keys import InvalidKeyError
from opaque_keys.edx.keys import CourseKey
from openedx_events.learning.data import CourseData, CourseEnrollmentData, UserData, UserPersonalData
from openedx_events.learning.signals import COURSE_ENROLLMENT_CHANGED, COURSE_ENROLLMENT_CREATED

from clickhouse_outbox.clickhouse.backends import get_backend
from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.receivers import user_retired
from outbox_project.platform.models import CourseEnrollment, ExternalId, ExternalIdType, UserProfile

LEARNERS = (("ada", "Ada Lovelace"), ("grace", "Grace Hopper"), ("alan", "Alan Turing"))
TABLES = ("course_enrollment", "user_profile", "external_id", "taxonomy", "tag", "object_tag")


def event(enrollment):
    user = enrollment.user
    return CourseEnrollmentData(
        user=UserData(id=user.id, is_active=True,
                      pii=UserPersonalData(username=user.username, email=user.email, name=user.profile.name)),
        course=CourseData(course_key=enrollment.course_id), mode=enrollment.mode, is_active=enrollment.is_active,
        creation_date=enrollment.created,
    )


class Command(BaseCommand):
    help = (
        "The standalone project's learners for the demo: three learners registered and enrolled in COURSE_KEY, "
        "the course tagged, one learner upgraded and one retired. --report prints the rows ClickHouse holds."
    )

    def add_arguments(self, parser):
        parser.add_argument("course_key", metavar="COURSE_KEY")
        parser.add_argument("--report", action="store_true", help="Print what ClickHouse holds, change nothing.")

    def handle(self, *args, **options):
        try:
            course_key = CourseKey.from_string(options["course_key"])
        except InvalidKeyError:
            raise CommandError(f"{options['course_key']!r} is not a course key") from None
        if options["report"]:
            self.report()
            return
        users = [self.register(username, name) for username, name in LEARNERS]
        enrollments = [self.enroll(user, course_key) for user in users]
        # The tagging models by their app label: openedx-core's, or Ulmo's openedx-learning's.
        Taxonomy, Tag, ObjectTag = (apps.get_model("oel_tagging", name) for name in ("Taxonomy", "Tag", "ObjectTag"))
        with transaction.atomic():
            taxonomy = Taxonomy.objects.create(name="Subjects", export_id="subjects")
            science = Tag.objects.create(taxonomy=taxonomy, value="Science")
            computing = Tag.objects.create(taxonomy=taxonomy, value="Computing", parent=science)
            ObjectTag.objects.create(object_id=str(course_key), taxonomy=taxonomy, tag=computing,
                                     _value=computing.value, _export_id=taxonomy.export_id)
        with transaction.atomic():
            enrollment = enrollments[1]
            enrollment.mode = "verified"
            enrollment.save()
            COURSE_ENROLLMENT_CHANGED.send_event(enrollment=event(enrollment))
        with transaction.atomic():  # the retirement pipeline's "retire misc" step, in the LMS
            user_retired(sender=None, user=users[2])
        self.stdout.write(
            f"{len(users)} learners registered and enrolled in {course_key}, the course tagged "
            f"({taxonomy.name}: {science.value} > {computing.value}), {users[1].username} upgraded to verified, "
            f"{users[2].username} retired."
        )

    @staticmethod
    def register(username, name):
        with transaction.atomic():
            user = get_user_model().objects.create(username=username, email=f"{username}@example.com")
            UserProfile.objects.create(user=user, name=name, country="GB")
            id_type, _ = ExternalIdType.objects.get_or_create(name="xapi")
            ExternalId.objects.create(user=user, external_id_type=id_type)
        return user

    @staticmethod
    def enroll(user, course_key):
        with transaction.atomic():
            enrollment = CourseEnrollment.objects.create(user=user, course_id=course_key, mode="audit")
            COURSE_ENROLLMENT_CHANGED.send_event(enrollment=event(enrollment))
            COURSE_ENROLLMENT_CREATED.send_event(enrollment=event(enrollment))
        return enrollment

    def report(self):
        backend = get_backend()
        self.stdout.write("Learner and tag rows in ClickHouse (latest per subject):")
        for table in TABLES:
            name = qualified_name(backend.database, table)
            total = backend.query(f"SELECT count() AS n FROM {name}")[0]["n"]
            self.stdout.write(f"  {table:<20} {int(total):>3}")
        profiles = backend.query(f"SELECT username FROM {qualified_name(backend.database, 'user_profile')} "
                                 "ORDER BY username")
        modes = backend.query(f"SELECT username, argMax(mode, time_last_dumped) AS mode FROM "
                              f"{qualified_name(backend.database, 'course_enrollment')} GROUP BY username "
                              "ORDER BY username")
        self.stdout.write(f"  user profiles: {', '.join(row['username'] for row in profiles) or 'none'} "
                          "(the retired learner's are deleted)")
        self.stdout.write("  enrollments: " + ", ".join(f"{row['username']} {row['mode']}" for row in modes))
