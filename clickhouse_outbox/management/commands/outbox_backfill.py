"""
manage.py outbox_backfill: send once what existed before the outbox was installed.
"""

from django.core.management.base import CommandError

from clickhouse_outbox.dumps.initial import ORIGIN, never_dumped, start_first_backfill
from clickhouse_outbox.dumps.jobs import DumpAlreadyActive, progress_line
from clickhouse_outbox.management.dumping import add_drain_arguments, queue_and_drain, run_in_foreground
from clickhouse_outbox.management.output import OutboxCommand


class Command(OutboxCommand):
    help = (
        "Send once what existed before the outbox was installed: a whole-table dump job (learner tables walked "
        "by key range, with progress; resumed where it stopped) of every producer that is on and was never "
        "dumped whole. Run after migrate (the Tutor plugin's init task does); run again, it does nothing. "
        "--queue leaves the job to celery workers (the drain task hands it to one) instead of running it here; "
        "--drain also sends the rows from this process as they are queued, and waits for the last. "
        "Exit status: 0 when done (or queued, or nothing to do; with --drain, delivered), 1 otherwise."
    )
    origin = ORIGIN

    def add_arguments(self, parser):
        parser.add_argument("--queue", action="store_true",
                            help="Start the job and return: celery workers run it (Tutor's init task does this).")
        add_drain_arguments(parser)

    def handle(self, *args, **options):
        if options["queue"] and options["drain"]:
            raise CommandError("--queue leaves the job to celery workers; --drain runs it here: choose one.")
        try:
            job = start_first_backfill()
        except DumpAlreadyActive as exc:
            if exc.job is None or exc.job.origin != ORIGIN:
                if options["queue"]:  # an init task must not fail for it: the next init starts it
                    self.stdout.write(f"Not started: {exc} Run outbox_backfill again once it is done.")
                    return
                raise CommandError(str(exc)) from None
            job = exc.job
            self.stdout.write(f"The first backfill (dump job {job.pk}) is already under way ({progress_line(job)}).")
        if job is None:
            self.stdout.write("Nothing to backfill: every producer that is on was dumped whole before.")
            return
        if options["queue"]:
            self.stdout.write(f"Dump job {job.pk} ({job.description}) queued: celery workers run it; the drain sends "
                              "its rows. Its progress: the admin's dump jobs, or outbox_status.")
            return
        queue_and_drain(self, options, lambda: self.run(job))

    def run(self, job):
        run_in_foreground(self, job)
        if never_dumped():
            raise CommandError(f"Still never dumped whole: {', '.join(never_dumped())}.")
