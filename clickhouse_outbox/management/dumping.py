"""
Running a dump job from a management command: start it (or join the one under way when
it dumps the same thing), work on it in this process next to any celery workers, and
print progress. `outbox_requeue --all-courses` and `dump_courses_to_clickhouse` use it.
"""

import time

from django.core.management.base import CommandError

from clickhouse_outbox.dumps.jobs import DumpAlreadyActive, job_progress, progress_line, start_job
from clickhouse_outbox.dumps.run import run_job
from clickhouse_outbox.models import DumpJob, DumpJobCourse
from clickhouse_outbox.text import about, plural

#: Seconds between progress lines (and between looks at courses other workers hold).
PROGRESS_EVERY = 2.0


def start_or_join(command, scope, **job_args):
    """
    A new job; or the active one when it dumps the same courses (all of them, or those changed
    since the same time): a dump started in the admin with no celery worker is run this way.
    """
    try:
        return start_job(scope, origin=command.origin, **job_args)
    except DumpAlreadyActive as exc:
        job = exc.job
        same = job is not None and job.scope == scope and (
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


def run_in_foreground(command, job):
    """
    Work on `job` until it ends, printing progress; raise CommandError if courses failed,
    the job was cancelled or the courses could not be listed. Ctrl-C gives back what this
    process claimed: the job stays queued for celery workers, or for this command run again.
    """
    command.stdout.write(f"Dump job {job.pk}: {job.description}.")
    printer = Progress(command, job)
    try:
        while True:
            job = run_job(job, on_course=printer.course)
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
    command.stdout.write(f"Dump job {job.pk} done: {progress_line(job, progress)}. The drain sends their rows.")
    if progress["failed"]:
        failed = job.courses.filter(status=DumpJobCourse.Status.FAILED).values_list("course_key", "error")
        for course_key, error in failed[:20]:
            command.stderr.write(f"Not queued: {about(course_key, error)}")
        raise CommandError(
            f"{plural(progress['failed'], 'course')} could not be queued; see the dump job in the admin."
        )
    return job


class Progress:
    """Prints where a job stands at most every PROGRESS_EVERY seconds, and each failed course at once."""

    def __init__(self, command, job):
        self.command = command
        self.job = job
        self.printed = 0.0

    def course(self, outcome):
        if outcome.status == DumpJobCourse.Status.FAILED:
            self.command.stderr.write(f"Not queued: {about(outcome.course_key, outcome.error)}")
        self.line()

    def line(self, force=False, waiting=False):
        now = time.monotonic()
        if not force and now - self.printed < PROGRESS_EVERY:
            return
        self.printed = now
        progress = job_progress(self.job)
        text = progress_line(self.job, progress)
        if waiting and progress["left"]:
            text += f"; waiting for {plural(progress['left'], 'course')} another worker is reading"
        self.command.stdout.write(text)
