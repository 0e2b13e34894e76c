"""
manage.py outbox_drain: send the outbox to ClickHouse, for operators without celery beat.

Its exit status is about delivery (`EXIT_STATUS`): what this run could not do, and what
the batches and the age of what waits say. A subject the source could not read (before
this run) and what a verification found are reported by outbox_status and outbox_verify:
a drain that sent everything exits 0 whatever the last verification found.
"""

import time

from django.core.management.base import CommandError
from django.db import DatabaseError

from clickhouse_outbox import conf
from clickhouse_outbox.management.options import positive_int, positive_seconds
from clickhouse_outbox.management.output import OutboxCommand
from clickhouse_outbox.monitoring.report import report_drain
from clickhouse_outbox.operations.status import FAILURES, HEALTHY, STALE, outbox_status
from clickhouse_outbox.outbox.drain import drain, drain_until_empty
from clickhouse_outbox.outbox.purge import purge_if_due
from clickhouse_outbox.text import plural


#: What each exit status of outbox_drain means (--help says the same, and so the docs' commands reference).
EXIT_STATUS = {
    HEALTHY: "delivery is healthy: this run sent what was due, no batch failed or waits to retry after an error, "
             "and with --until-empty nothing is left",
    FAILURES: "delivery needs attention: this run could not send a batch (it waits to retry, or failed for good), "
              "lost one to another drainer or could not read a requested snapshot; or a failed batch, or one "
              "waiting to retry after an error, is in the outbox (for as long as that lasts); or --until-empty "
              "gave up with rows left; or the purge after the drain could not run",
    STALE: "delivery is stuck: the oldest unsent row is older than --max-age (before 1)",
}


class Command(OutboxCommand):
    help = (
        "Send pending outbox rows to ClickHouse in batches. --once (the default) sends what is due and exits, "
        "for cron; --until-empty waits out retries until nothing is left or --timeout passes; --loop runs "
        "forever, every --interval seconds. Exit status, about delivery only (outbox_status reports subjects "
        "that could not be read, outbox_verify what differs in ClickHouse): "
        + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_STATUS.items())
        + " (a bad option: 2, with the usage)."
    )

    def add_arguments(self, parser):
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--once", action="store_true", help="Send what is due now, then exit (default).")
        mode.add_argument("--until-empty", action="store_true", help="Keep draining until nothing is pending.")
        mode.add_argument("--loop", action="store_true", help="Drain forever, sleeping --interval between runs.")
        parser.add_argument("--timeout", type=positive_seconds, default=600, metavar="SECONDS",
                            help="With --until-empty: give up after SECONDS (default: %(default)s).")
        parser.add_argument("--interval", type=positive_seconds, default=None, metavar="SECONDS",
                            help="With --loop: seconds between runs (default: CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS, "
                                 f"now {conf.drain_interval_secs():g}).")
        parser.add_argument("--max-batches", type=positive_int, default=None, metavar="N",
                            help="Stop after N batches (default: no limit, only CLICKHOUSE_OUTBOX_DRAIN_MAX_SECS).")
        parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                            help="Batches sent at once, each from its own thread (default: "
                                 f"CLICKHOUSE_OUTBOX_DRAIN_THREADS, now {conf.drain_threads()}).")
        parser.add_argument("--max-age", type=positive_seconds, default=None, metavar="SECONDS",
                            help="Exit with status 2 when the oldest unsent row is older than this (default: "
                                 f"CLICKHOUSE_OUTBOX_STATUS_MAX_AGE_SECS, now {conf.status_max_age_secs():g}).")

    def handle(self, *args, **options):
        max_age = options["max_age"] or conf.status_max_age_secs()
        threads = options["threads"] or conf.drain_threads()
        if options["until_empty"]:
            result, left = drain_until_empty(timeout=options["timeout"], threads=threads)
            self.report(result)
            gave_up = None
            if left["pending_entries"] or left["open_batches"]:
                gave_up = (
                    f"Gave up after {options['timeout']:g}s with {plural(left['pending_entries'], 'pending entry', 'pending entries')} "
                    f"and {plural(left['open_batches'], 'batch', 'batches')} to retry. "
                    f"Last errors: {'; '.join(result.errors[-3:]) or 'none'}"
                )
            self.exit_with_status(result, max_age, gave_up=gave_up)
            return
        if options["loop"]:
            interval = options["interval"] or conf.drain_interval_secs()
            self.stdout.write(f"Draining every {interval:g}s; stop with Ctrl-C.")
            try:
                while True:
                    started = time.monotonic()
                    result = drain(max_batches=options["max_batches"], max_seconds=conf.drain_max_secs(),
                                   threads=threads)
                    report_drain(result, time.monotonic() - started)  # as the task: StatsD if a host is set
                    if result.batches_sent or result.errors:
                        self.report(result)
                    self.purge()
                    time.sleep(interval)
            except KeyboardInterrupt:
                self.stdout.write("Stopped.")
            return
        started = time.monotonic()
        result = drain(max_batches=options["max_batches"], max_seconds=conf.drain_max_secs(), threads=threads)
        report_drain(result, time.monotonic() - started)
        self.report(result)
        self.purge()
        self.exit_with_status(result, max_age)

    def purge(self):
        try:
            purge_if_due()
        except DatabaseError as exc:
            raise CommandError(
                f"Rows were sent, but old ones could not be purged: the Django cache does not work ({exc}). "
                "With the database cache, create its table: manage.py createcachetable"
            ) from None

    def exit_with_status(self, result, max_age, gave_up=None):
        """
        Exit with the status of delivery (EXIT_STATUS): the outbox's batches and the age of
        what waits, and 1 at least if this run could not send something or take a requested
        snapshot (or, with --until-empty, gave up with rows left: `gave_up` says so).
        """
        status = outbox_status()
        code = status.exit_code(max_age, delivery=True)
        problems = status.problems(max_age, delivery=True)
        ran = []
        if gave_up:
            ran.append(gave_up)
        elif not result.ok:
            ran.append(f"this run could not send everything ({result}; errors above)")
        if result.snapshots_failed:
            ran.append(f"{plural(result.snapshots_failed, 'requested snapshot')} could not be taken (errors above): "
                       "outbox_requeue --failed takes them again")
        if ran:
            code = max(code, FAILURES)
        if code:
            raise CommandError("; ".join(ran + problems), returncode=code)

    def report(self, result):
        self.stdout.write(f"Drained: {result}.")
        for error in result.errors[-5:]:
            self.stderr.write(f"  {error}")
