"""
manage.py outbox_requeue: queue courses again, or give what failed (or waits) another round.
"""

from django.core.management.base import BaseCommand, CommandError

from clickhouse_outbox.dumps.jobs import active_job
from clickhouse_outbox.management.dumping import run_in_foreground, start_or_join
from clickhouse_outbox.management.options import aware_datetime
from clickhouse_outbox.models import DumpJob
from clickhouse_outbox.outbox.requeue import failed_subjects, retry_now
from clickhouse_outbox.producers.course_structure import parse_course_key, queue_courses
from clickhouse_outbox.serializers.course_structure import PRODUCER
from clickhouse_outbox.sources import get_course_source
from clickhouse_outbox.text import about, plural


class Command(BaseCommand):
    help = (
        "Queue a new snapshot of the named courses; or of every course the course source knows "
        "(--all-courses) or of those published since a time (--changed-since), as a dump job that prints "
        "its progress and that celery workers resume if this command is stopped. --failed makes every failed "
        "or waiting batch due now, with a fresh set of attempts, and takes again each course whose latest "
        "snapshot could not be read. The drain (celery beat or outbox_drain) sends the rows. "
        "Exit status: 0 when everything asked for was queued, 1 otherwise (each course is named)."
    )
    origin = "outbox_requeue"

    def add_arguments(self, parser):
        parser.add_argument("course_keys", nargs="*", metavar="COURSE_KEY", help="e.g. course-v1:Org+Course+Run")
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument("--all-courses", action="store_true", help="Every course the course source knows.")
        scope.add_argument("--changed-since", type=aware_datetime, metavar="WHEN",
                           help="Courses published at or after WHEN (ISO 8601, UTC unless it says otherwise, "
                                "e.g. 2026-11-01T08:30).")
        scope.add_argument("--run-dump-job", action="store_true",
                           help="Work on the dump job under way (one started in the admin) in this process until it "
                                "ends: for sites that run no celery worker.")
        parser.add_argument("--failed", action="store_true",
                            help="Batches that failed or wait to retry, and courses whose latest snapshot failed.")

    def handle(self, *args, **options):
        course_keys, all_courses, since = options["course_keys"], options["all_courses"], options["changed_since"]
        if options["run_dump_job"]:
            job = active_job()
            if job is None:
                raise CommandError("No dump job is under way.")
            run_in_foreground(self, job)
            return
        if not (course_keys or all_courses or since or options["failed"]):
            raise CommandError("Name course keys, or use --all-courses, --changed-since, --run-dump-job or --failed.")
        if course_keys and (all_courses or since):
            raise CommandError("Name course keys, or use --all-courses or --changed-since: not both.")
        try:
            keys = [parse_course_key(key) for key in course_keys]
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        failures = []
        if options["failed"]:
            result = retry_now()
            self.stdout.write(
                f"{plural(result.retried, 'failed or waiting batch', 'failed or waiting batches')} "
                "made due now."
            )
            keys.extend(subject for subject in failed_subjects(PRODUCER) if subject not in map(str, keys))
        if keys:
            failures = self.queue(list(dict.fromkeys(keys)))
        if all_courses or since:
            scope = DumpJob.Scope.ALL if all_courses else DumpJob.Scope.CHANGED
            run_in_foreground(self, start_or_join(self, scope, changed_since=since))
        if failures:
            raise CommandError(f"{plural(len(failures), 'course')} could not be queued.")

    def queue(self, keys):
        total = len(keys)

        def progress(index, course_key, snapshot):
            if snapshot is not None and snapshot.status == snapshot.Status.QUEUED:
                self.stdout.write(f"[{index}/{total}] {course_key}: {plural(snapshot.row_count, 'row')} queued")

        snapshots, failures = queue_courses(keys, "requeue", source=get_course_source(), on_progress=progress)
        for course_key, error in failures:
            self.stderr.write(f"Not queued: {about(course_key, error)}")
        self.stdout.write(f"{len(snapshots)} of {plural(total, 'course')} queued.")
        return failures
