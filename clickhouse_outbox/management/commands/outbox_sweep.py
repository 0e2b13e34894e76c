"""
manage.py outbox_sweep: the sweep of the learner and tag tables, run by hand or from cron
(the celery beat entry runs the same, every CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS).
"""

import json

from django.core.management.base import CommandError

from clickhouse_outbox import conf
from clickhouse_outbox.management.options import positive_int, positive_seconds, producer_name
from clickhouse_outbox.management.output import OutboxCommand
from clickhouse_outbox.outbox import registry
from clickhouse_outbox.reconcile.sweep import sweep, sweepable_producers
from clickhouse_outbox.text import plural


class Command(OutboxCommand):
    help = (
        "Find learner and tag rows written without a signal (bulk_create, QuerySet.update(), raw SQL): read each "
        "table by ranges of primary keys (one query per range), and queue every row whose content differs from "
        "its latest snapshot, or that no snapshot holds; ranges whose digest did not change since the last sweep "
        "are not compared again. The drain sends what it queued. For cron, where celery beat does not run it "
        "(CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--producer", action="append", type=producer_name, default=None, metavar="NAME",
                            help="Whose table (repeat for several; default: every learner and tag producer that is on).")
        parser.add_argument("--chunk", type=positive_int, default=None, metavar="N",
                            help="Keys per range (default: CLICKHOUSE_OUTBOX_SWEEP_CHUNK).")
        parser.add_argument("--max-seconds", type=positive_seconds, default=None, metavar="S",
                            help="Stop after S seconds; the next sweep goes on where this one stopped (default: "
                                 "read every table to its end).")
        parser.add_argument("--json", action="store_true", help="Print one JSON object instead of text.")

    def handle(self, *args, **options):
        names = options["producer"]
        if names:
            unsweepable = [name for name in names if not getattr(registry.get(name), "sweepable", False)]
            if unsweepable:
                raise CommandError(f"{', '.join(unsweepable)}: not swept (its subjects are not rows of a platform "
                                   "table); outbox_verify compares it.")
        elif not sweepable_producers():
            raise CommandError("No learner or tag producer is on (or its model installed): nothing to sweep.")
        chunk = options["chunk"] or conf.sweep_chunk()
        results = sweep(names, chunk=chunk, max_seconds=options["max_seconds"])
        if options["json"]:
            self.stdout.write(json.dumps({"chunk": chunk, "producers": [result.as_dict() for result in results]},
                                         indent=2))
            return
        for result in results:
            if result.skipped:
                self.stdout.write(f"{result.producer}: skipped ({result.skipped})")
                continue
            line = (f"{result.producer}: {plural(result.rows, 'row')} in {plural(result.ranges, 'range')} read, "
                    f"{result.compared:,} compared row by row, {result.queued:,} queued")
            if result.failed:
                line += f", {result.failed:,} could not be serialized (see the log)"
            if not result.complete:
                line += "; stopped before the end (the next sweep goes on)"
            self.stdout.write(f"{line} ({result.seconds:.1f} s)")
