"""
manage.py outbox_drain: send the outbox to ClickHouse, for operators without celery beat.
"""

import time

from django.core.management.base import BaseCommand, CommandError

from clickhouse_outbox import conf
from clickhouse_outbox.outbox.claim import server_failure
from clickhouse_outbox.outbox.drain import backlog, drain, drain_until_empty
from clickhouse_outbox.outbox.purge import purge_if_due


class Command(BaseCommand):
    help = (
        "Send pending outbox rows to ClickHouse in batches. --once (the default) sends what is due "
        "and exits, for cron; --until-empty waits out retries until nothing is left or --timeout passes; "
        "--loop runs forever, every --interval seconds. Exits non-zero when rows could not be sent."
    )

    def add_arguments(self, parser):
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--once", action="store_true", help="Send what is due now, then exit (default).")
        mode.add_argument("--until-empty", action="store_true", help="Keep draining until nothing is pending.")
        mode.add_argument("--loop", action="store_true", help="Drain forever, sleeping --interval between runs.")
        parser.add_argument("--timeout", type=float, default=600,
                            help="With --until-empty: give up after this many seconds (default 600).")
        parser.add_argument("--interval", type=float, default=None,
                            help="With --loop: seconds between runs (default CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS).")
        parser.add_argument("--max-batches", type=int, default=None, help="Stop after this many batches.")

    def handle(self, *args, **options):
        if options["until_empty"]:
            result, left = drain_until_empty(timeout=options["timeout"])
            self.report(result)
            if left["pending_entries"] or left["open_batches"]:
                raise CommandError(
                    f"Gave up after {options['timeout']:g}s with {left['pending_entries']} pending entries and "
                    f"{left['open_batches']} batches to retry. Last errors: {'; '.join(result.errors[-3:]) or 'none'}"
                )
            if result.batches_failed:
                raise CommandError(
                    f"{result.batches_failed} batches failed for good (see the admin, then outbox_requeue --failed): "
                    f"{'; '.join(result.errors[-3:])}"
                )
            return
        if options["loop"]:
            interval = options["interval"] or conf.drain_interval_secs()
            self.stdout.write(f"Draining every {interval:g}s; stop with Ctrl-C.")
            try:
                while True:
                    result = drain(max_batches=options["max_batches"], max_seconds=conf.drain_max_secs())
                    if result.batches_sent or result.errors:
                        self.report(result)
                    purge_if_due()
                    time.sleep(interval)
            except KeyboardInterrupt:
                self.stdout.write("Stopped.")
            return
        result = drain(max_batches=options["max_batches"], max_seconds=conf.drain_max_secs())
        self.report(result)
        purge_if_due()
        waiting = server_failure()
        if not result.ok or waiting:
            left = backlog()
            errors = result.errors[-3:] or [f"batch {waiting.pk} waits to retry: {waiting.last_error}"]
            raise CommandError(
                f"Some rows were not sent ({left['pending_entries']} entries pending, {left['open_batches']} batches "
                f"to retry, {left['failed_batches']} failed): {'; '.join(errors)}"
            )

    def report(self, result):
        self.stdout.write(f"Drained: {result}.")
        for error in result.errors[-5:]:
            self.stderr.write(f"  {error}")

