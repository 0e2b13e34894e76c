"""
Running a dump job from a management command: start it (or join the one under way when
it dumps the same thing), work on it in this process next to any celery workers, and
print progress; with --drain, send its rows as they are queued and wait for the last.
`outbox_requeue --all`, `dump_courses_to_clickhouse` and `dump_data_to_clickhouse` use it.
"""

import time

from django.core.management.base import CommandError

from clickhouse_outbox import conf
from clickhouse_outbox.management.options import positive_seconds
from clickhouse_outbox.outbox.drain import drain_alongside
from clickhouse_outbox.dumps.jobs import DEFAULT_PRODUCERS, DumpAlreadyActive, job_noun, job_progress, progress_line, start_job
from clickhouse_outbox.dumps.run import run_job
from clickhouse_outbox.models import DumpJob, DumpJobItem
from clickhouse_outbox.text import about, plural

#: Seconds between progress lines (and between looks at courses other workers hold).
PROGRESS_EVERY = 2.0


def start_or_join(command, scope, *, producers=DEFAULT_PRODUCERS, action=DumpJob.Action.DUMP, **job_args):
    """
    A new job; or the active one when it does the same (dumps, or verifies, all subjects of
    the same producers, or those changed since the same time): a job started in the admin
    with no celery worker is run this way.
    """
    try:
        return start_job(scope, origin=command.origin, producers=producers, action=action, **job_args)
    except DumpAlreadyActive as exc:
        job = exc.job
        same = job is not None and job.scope == scope and job.producer_names == list(producers) and (
            job.action == action) and (
            scope == DumpJob.Scope.ALL
            or (scope == DumpJob.Scope.CHANGED and job.changed_since == job_args.get("changed_since"))
        )
        if same:
            command.stdout.write(
                f"Dump job {job.pk} ({job.description}) is already under way ({progress_line(job)}); "
                "working on it with the others."
            )
            return job
        raise CommandError(str(exc)) from None


def run_in_foreground(command, job, producers=None, chunk_size=None):
    """
    Work on `job` until it ends, printing progress; raise CommandError if subjects failed,
    the job was cancelled or the subjects could not be listed. Ctrl-C gives back what this
    process claimed: the job stays queued for celery workers, or for this command run again.
    `producers` ({name: producer}) stands in for registered ones; `chunk_size` overrides each producer's
    dump_chunk in this process.
    """
    command.stdout.write(f"{'Verification' if job.action == DumpJob.Action.VERIFY else 'Dump job'} {job.pk}: "
                         f"{job.description}.")
    printer = Progress(command, job)
    try:
        while True:
            job = run_job(job, on_item=printer.item, producers=producers, chunk_size=chunk_size)
            if not job.active:
                break
            printer.line(force=True, waiting=True)
            time.sleep(PROGRESS_EVERY)  # another process holds the courses left
    except KeyboardInterrupt:
        raise CommandError(
            f"Interrupted. Dump job {job.pk} stays under way: celery workers resume it, or run this command again.",
            returncode=130,
        ) from None
    progress = job_progress(job)
    if job.status == DumpJob.Status.FAILED:
        raise CommandError(f"Dump job {job.pk} failed: {job.error}")
    if job.status == DumpJob.Status.CANCELLED:
        raise CommandError(f"Dump job {job.pk} was cancelled after {progress_line(job, progress)}.")
    if job.action == DumpJob.Action.VERIFY:  # the command reports the verdicts
        command.stdout.write(f"Verification {job.pk} done: {progress_line(job, progress)}.")
        return job
    command.stdout.write(f"Dump job {job.pk} done: {progress_line(job, progress)}. The drain sends their rows.")
    if progress["failed"]:
        failed = job.items.filter(status=DumpJobItem.Status.FAILED).values_list("subject", "error")
        for subject, error in failed[:20]:
            command.stderr.write(f"Not queued: {about(subject, error)}")
        raise CommandError(
            f"{plural(progress['failed'], *job_noun(job))} could not be queued; see the dump job in the admin."
        )
    return job


class Progress:
    """Prints where a job stands at most every PROGRESS_EVERY seconds, and each failed subject at once."""

    def __init__(self, command, job):
        self.command = command
        self.job = job
        self.printed = 0.0

    def item(self, outcome):
        if outcome.status == DumpJobItem.Status.FAILED and self.job.action == DumpJob.Action.DUMP:
            self.command.stderr.write(f"Not queued: {about(outcome.subject, outcome.error)}")
        self.line()

    def line(self, force=False, waiting=False):
        now = time.monotonic()
        if not force and now - self.printed < PROGRESS_EVERY:
            return
        self.printed = now
        progress = job_progress(self.job)
        text = progress_line(self.job, progress)
        if waiting and progress["left"]:
            text += f"; waiting for {plural(progress['left'], *job_noun(self.job))} another worker is reading"
        self.command.stdout.write(text)


def add_drain_arguments(parser):
    """--drain and its --timeout, as each dumping command takes them."""
    parser.add_argument("--drain", action="store_true",
                        help="Send the rows from this process as they are queued (ClickHouse takes one batch while "
                             "the next is read), then wait until every one is delivered; exit 1 if some are not.")
    parser.add_argument("--timeout", type=positive_seconds, default=3600, metavar="SECONDS",
                        help="With --drain: give up waiting after SECONDS once everything is queued "
                             "(default: %(default)s).")


def queue_and_drain(command, options, work):
    """
    Run `work` (what the command queues); with --drain, beside a drain of what it queues,
    then report the drain, and raise CommandError if rows are left or a batch failed. A
    `work` that raises CommandError (some subjects could not be queued) still has what it
    queued delivered before the error is raised.
    """
    if not options["drain"]:
        work()
        return

    def queue():
        try:
            work()
        except CommandError as exc:
            return exc
        return None

    timeout = options["timeout"]
    error, result, left = drain_alongside(queue, timeout=timeout, threads=conf.drain_threads())
    command.stdout.write(f"Drained: {result}.")
    if left["pending_entries"] or left["open_batches"]:
        command.stderr.write(
            f"Rows are still waiting after {timeout:g}s: {plural(left['pending_entries'], 'pending entry', 'pending entries')}, "
            f"{plural(left['open_batches'], 'batch', 'batches')} to retry; the periodic drain (or outbox_drain) sends "
            f"them. Last errors: {'; '.join(result.errors[-3:]) or 'none'}"
        )
    if error is not None:
        raise error
    if left["pending_entries"] or left["open_batches"]:
        raise CommandError(f"Not every row was delivered within {timeout:g}s (above).")
    if result.batches_failed:
        raise CommandError(
            f"{plural(result.batches_failed, 'batch', 'batches')} failed for good: {'; '.join(result.errors[-3:])}"
        )
