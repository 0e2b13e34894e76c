"""
manage.py dump_courses_to_clickhouse: the event-sink plugins' full dump, through the outbox.

It keeps the old command's options so existing scripts still run, but instead of posting
each course straight to ClickHouse (and losing it when ClickHouse is down) it runs a dump
job that queues a snapshot per course; the drain delivers them, with retries.
"""

import argparse

from django.core.management.base import CommandError

from clickhouse_outbox.management.dumping import add_drain_arguments, queue_and_drain, run_in_foreground, start_or_join
from clickhouse_outbox.management.options import aware_datetime, positive_int
from clickhouse_outbox.management.output import OutboxCommand
from clickhouse_outbox.models import DumpJob
from clickhouse_outbox.producers.course_structure import COURSES
from clickhouse_outbox.sources.keys import parse_course_key
from clickhouse_outbox.sources.base import SubjectSourceError

OLD_CONNECTION_OPTIONS = ("url", "username", "password", "database", "timeout_secs")


class Command(OutboxCommand):
    help = (
        "Queue a snapshot of every course (or of --courses, or of those published since --changed-since) for "
        "ClickHouse, as a dump job that prints its progress and that celery workers resume if this command is "
        "stopped. With --drain, also send the rows as they are queued and wait until they are delivered. Exit status: 0 when "
        "every course was queued (and with --drain, delivered), 1 otherwise."
    )
    origin = "dump_courses_to_clickhouse"

    def add_arguments(self, parser):
        parser.add_argument("--courses", nargs="+", default=None, metavar="COURSE_KEY",
                            help="Only these courses (default: every course the course source knows).")
        parser.add_argument("--courses_to_skip", "--courses-to-skip", nargs="+", default=(), metavar="COURSE_KEY",
                            help="Leave these courses out.")
        parser.add_argument("--changed-since", type=aware_datetime, metavar="WHEN",
                            help="Only courses published at or after WHEN (ISO 8601, UTC unless it says otherwise).")
        parser.add_argument("--force", action="store_true",
                            help="Accepted for compatibility: every selected course is always queued.")
        parser.add_argument("--limit", type=positive_int, default=None, metavar="N",
                            help="Queue at most N courses (default: no limit).")
        add_drain_arguments(parser)
        for name in OLD_CONNECTION_OPTIONS:
            parser.add_argument(f"--{name}", default=None, help=argparse.SUPPRESS)

    def handle(self, *args, **options):
        moved = [name for name in OLD_CONNECTION_OPTIONS if options[name]]
        if moved:
            # The old command took connection options; a password on a command line is visible
            # to every user of the machine, and the outbox sends with the configured connection.
            raise CommandError(
                f"--{', --'.join(moved)}: the connection now comes only from EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG; "
                "remove these options."
            )
        if options["courses"] and options["changed_since"]:
            raise CommandError("Use --courses or --changed-since, not both.")
        scope, job_args = self.scope(options)
        job = start_or_join(self, scope, **job_args)
        queue_and_drain(self, options, lambda: run_in_foreground(self, job))

    def scope(self, options):
        """(scope, job arguments): every course unless a list, a skip list or a limit narrows it."""
        try:
            skip = {parse_course_key(key) for key in options["courses_to_skip"]}
            chosen = [parse_course_key(key) for key in options["courses"]] if options["courses"] else None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["changed_since"] and not (skip or options["limit"]):
            return DumpJob.Scope.CHANGED, {"changed_since": options["changed_since"]}
        if chosen is None and not skip and options["limit"] is None:
            return DumpJob.Scope.ALL, {}
        if chosen is None:
            try:
                since = options["changed_since"]
                listed = COURSES.subjects_changed_since(since) if since else COURSES.all_subjects()
            except SubjectSourceError as exc:
                raise CommandError(f"Could not list the courses: {exc}") from None
            chosen = [parse_course_key(key) for key in listed]
        keys = [key for key in chosen if key not in skip][: options["limit"]]
        if not keys:
            raise CommandError("No course is left to dump once --courses_to_skip and --limit are applied.")
        return DumpJob.Scope.SELECTED, {"subjects": [(COURSES.name, str(key)) for key in keys]}
