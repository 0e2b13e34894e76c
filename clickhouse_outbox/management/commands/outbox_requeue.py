"""
manage.py outbox_requeue: queue courses again, or give failed sends another round of attempts.
"""

from django.core.management.base import BaseCommand, CommandError

from clickhouse_outbox.outbox.requeue import failed_subjects, requeue_batches
from clickhouse_outbox.producers.course_structure import parse_course_key, queue_courses
from clickhouse_outbox.serializers.course_structure import PRODUCER
from clickhouse_outbox.sources import get_course_source
from clickhouse_outbox.sources.base import CourseSourceError


class Command(BaseCommand):
    help = (
        "Queue a new snapshot of the named courses (or of --all-courses), and with --failed also of every "
        "course whose last snapshot could not be taken, and put failed batches back in the queue. "
        "The drain (celery beat or outbox_drain) sends them."
    )

    def add_arguments(self, parser):
        parser.add_argument("course_keys", nargs="*", metavar="COURSE_KEY", help="e.g. course-v1:Org+Course+Run")
        parser.add_argument("--all-courses", action="store_true", help="Every course the course source knows.")
        parser.add_argument("--failed", action="store_true",
                            help="Courses whose latest snapshot failed, and batches that ran out of attempts.")

    def handle(self, *args, **options):
        if not (options["course_keys"] or options["all_courses"] or options["failed"]):
            raise CommandError("Name course keys, or use --all-courses or --failed.")
        source = get_course_source()
        try:
            keys = [parse_course_key(key) for key in options["course_keys"]]
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["all_courses"]:
            try:
                keys.extend(source.course_keys())
            except CourseSourceError as exc:
                raise CommandError(f"Could not list the courses: {exc}") from None
        if options["failed"]:
            count = requeue_batches()
            self.stdout.write(f"{count} failed batches queued again.")
            keys.extend(parse_course_key(subject) for subject in failed_subjects(PRODUCER))
        keys = list(dict.fromkeys(keys))
        total = len(keys)

        def progress(index, course_key, snapshot):
            if snapshot.status != snapshot.Status.FAILED:
                self.stdout.write(f"[{index}/{total}] {course_key}: {snapshot.row_count} rows queued")

        snapshots, failures = queue_courses(keys, "requeue", source=source, on_progress=progress)
        for course_key, error in failures:
            self.stderr.write(f"{course_key}: not queued: {error}")
        self.stdout.write(f"{len(snapshots)} of {total} courses queued.")
        if failures:
            raise CommandError(f"{len(failures)} courses could not be read; they are recorded as failed snapshots.")
