"""
manage.py outbox_requeue: queue courses (or any producer's subjects) again, or give what
failed (or waits) another round.
"""

from django.core.management.base import CommandError

from clickhouse_outbox.dumps.jobs import active_job
from clickhouse_outbox.management.dumping import add_drain_arguments, queue_and_drain, run_in_foreground, start_or_join
from clickhouse_outbox.management.options import aware_datetime, producer_name
from clickhouse_outbox.management.output import OutboxCommand
from clickhouse_outbox.models import DumpJob
from clickhouse_outbox.operations.requeue import failed_subjects, retry_now
from clickhouse_outbox.outbox import registry
from clickhouse_outbox.outbox.snapshots import queue_subjects
from clickhouse_outbox.producers.course_structure import PRODUCER as COURSES
from clickhouse_outbox.text import about, plural


class Command(OutboxCommand):
    help = (
        "Queue a new snapshot of the named courses (or, with --producer, of that producer's subjects: "
        "enrollment, profile, external id or tag ids); or of all of them (--all, --all-courses) or of the "
        "courses published since a time (--changed-since), as a dump job that prints its progress and that "
        "celery workers resume if this command is stopped. --failed makes every failed or waiting batch "
        "(deletes included) due now, with a fresh set of attempts, and takes again each subject whose latest "
        "snapshot could not be read. The drain (celery beat or outbox_drain) sends the rows; with --drain, this "
        "process sends them too, as they are queued, and waits for the last. "
        f"Producers: {', '.join(registry.names())}. "
        "Exit status: 0 when everything asked for was queued, 1 otherwise (each subject is named)."
    )
    origin = "outbox_requeue"

    def add_arguments(self, parser):
        parser.add_argument("subjects", nargs="*", metavar="SUBJECT",
                            help="Course keys (e.g. course-v1:Org+Course+Run), or the ids of --producer's subjects.")
        parser.add_argument("--producer", action="append", type=producer_name, default=None, metavar="NAME",
                            help=f"Whose subjects (repeat for several; default: {COURSES}).")
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument("--all", action="store_true", help="Every subject of the producers the source knows.")
        scope.add_argument("--all-courses", action="store_true", help="Every course the course source knows.")
        scope.add_argument("--changed-since", type=aware_datetime, metavar="WHEN",
                           help="Courses published at or after WHEN (ISO 8601, UTC unless it says otherwise, "
                                "e.g. 2026-11-01T08:30).")
        scope.add_argument("--run-dump-job", action="store_true",
                           help="Work on the dump job under way (one started in the admin) in this process until it "
                                "ends: for sites that run no celery worker.")
        parser.add_argument("--failed", action="store_true",
                            help="Batches that failed or wait to retry, and subjects whose latest snapshot failed.")
        add_drain_arguments(parser)

    def handle(self, *args, **options):
        queue_and_drain(self, options, lambda: self.requeue(options))

    def requeue(self, options):
        subjects, since = options["subjects"], options["changed_since"]
        every = options["all"] or options["all_courses"]
        names = list(dict.fromkeys(options["producer"] or [COURSES]))
        if options["all_courses"]:
            if options["producer"] and names != [COURSES]:
                raise CommandError("--all-courses dumps courses; use --all with --producer for other subjects.")
            names = [COURSES]
        if options["run_dump_job"]:
            job = active_job()
            if job is None:
                raise CommandError("No dump job is under way.")
            run_in_foreground(self, job)
            return
        if not (subjects or every or since or options["failed"]):
            raise CommandError("Name course keys (or the ids of --producer's subjects), or use --all, --all-courses, "
                               "--changed-since, --run-dump-job or --failed.")
        if subjects and (every or since):
            raise CommandError("Name subjects, or use --all or --changed-since: not both.")
        if since and names != [COURSES]:
            raise CommandError("--changed-since dumps courses only: the platform keeps no such time for the others.")
        if subjects and len(names) > 1:
            raise CommandError("Name the subjects of one --producer at a time.")
        wanted = {name: [] for name in names} if subjects else {}
        for subject in subjects:
            try:
                wanted[names[0]].append(registry.get(names[0]).parse_subject(subject))
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        failures = []  # (producer name, subject, error)
        if options["failed"]:
            result = retry_now()
            self.stdout.write(
                f"{plural(result.retried, 'failed or waiting batch', 'failed or waiting batches')} made due now."
            )
            for producer in registry.all_producers():
                for subject in failed_subjects(producer.name):
                    if subject not in wanted.setdefault(producer.name, []):
                        wanted[producer.name].append(subject)
        for name, chosen in wanted.items():
            if chosen:
                failures += [(name, subject, error) for subject, error in self.queue(registry.get(name), chosen)]
        if every or since:
            scope = DumpJob.Scope.CHANGED if since else DumpJob.Scope.ALL
            run_in_foreground(self, start_or_join(self, scope, producers=names, changed_since=since))
        if failures:
            kinds = {name for name, _, _ in failures}
            noun = registry.get(kinds.pop()).noun if len(kinds) == 1 else ("subject", "subjects")
            raise CommandError(f"{plural(len(failures), *noun)} could not be queued.")

    def queue(self, producer, subjects):
        total = len(subjects)
        one, many = producer.noun

        def progress(index, subject, snapshot):
            if snapshot is not None and snapshot.status == snapshot.Status.QUEUED:
                self.stdout.write(f"[{index}/{total}] {subject}: {plural(snapshot.row_count, 'row')} queued")

        snapshots, failures = queue_subjects(producer, subjects, "requeue", on_progress=progress)
        for subject, error in failures:
            self.stderr.write(f"Not queued: {about(subject, error)}")
        self.stdout.write(f"{len(snapshots)} of {plural(total, one, many)} queued.")
        return failures
