"""
manage.py dump_courses_to_clickhouse: the event-sink plugins' full dump, through the outbox.

It keeps the old command's options so existing scripts still run, but instead of posting
each course straight to ClickHouse (and losing it when ClickHouse is down) it queues a
snapshot per course; the drain delivers them, with retries.
"""

import argparse

from django.core.management.base import BaseCommand, CommandError

from clickhouse_outbox.outbox.drain import drain_until_empty
from clickhouse_outbox.producers.course_structure import parse_course_key, queue_courses
from clickhouse_outbox.sources import get_course_source


class Command(BaseCommand):
    help = (
        "Queue a snapshot of every course (or of --courses) for ClickHouse. With --drain, also send them now "
        "and wait until they are delivered."
    )

    def add_arguments(self, parser):
        parser.add_argument("--courses", nargs="+", default=None, metavar="COURSE_KEY", help="Only these courses.")
        parser.add_argument("--courses_to_skip", "--courses-to-skip", nargs="+", default=(), metavar="COURSE_KEY",
                            help="Leave these courses out.")
        parser.add_argument("--force", action="store_true",
                            help="Accepted for compatibility: every selected course is always queued.")
        parser.add_argument("--limit", type=int, default=None, help="Queue at most this many courses.")
        parser.add_argument("--drain", action="store_true", help="Send the queued rows now and wait for them.")
        for name in ("--url", "--username", "--password", "--database", "--timeout_secs"):
            parser.add_argument(name, default=None, help=argparse.SUPPRESS)
        parser.add_argument("--timeout", type=float, default=3600, help="With --drain: give up after this long.")

    def handle(self, *args, **options):
        moved = [name for name in ("url", "username", "password", "database", "timeout_secs") if options[name]]
        if moved:
            # The old command took connection options; a password on a command line is visible
            # to every user of the machine, and the outbox sends with the configured connection.
            raise CommandError(
                f"--{', --'.join(moved)}: the connection now comes only from EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG; "
                "remove these options."
            )
        source = get_course_source()
        try:
            keys = [parse_course_key(key) for key in options["courses"]] if options["courses"] else source.course_keys()
            skip = {parse_course_key(key) for key in options["courses_to_skip"]}
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        keys = [key for key in keys if key not in skip][: options["limit"]]
        total = len(keys)
        self.stdout.write(f"Queueing {total} courses...")

        def progress(index, course_key, snapshot):
            if index % 50 == 0 or index == total:
                self.stdout.write(f"[{index}/{total}] queued up to {course_key}")

        snapshots, failures = queue_courses(keys, "dump", source=source, on_progress=progress)
        rows = sum(snapshot.row_count for snapshot in snapshots)
        self.stdout.write(f"{len(snapshots)} courses queued ({rows} rows).")
        for course_key, error in failures:
            self.stderr.write(f"{course_key}: not queued: {error}")
        if options["drain"]:
            result, left = drain_until_empty(timeout=options["timeout"])
            self.stdout.write(f"Drained: {result}.")
            if left["pending_entries"] or left["open_batches"]:
                raise CommandError(f"Rows are still waiting after {options['timeout']:g}s: {left}")
            if result.batches_failed:
                raise CommandError(f"{result.batches_failed} batches failed for good: {'; '.join(result.errors[-3:])}")
        if failures:
            raise CommandError(f"{len(failures)} courses could not be read; they are recorded as failed snapshots.")
