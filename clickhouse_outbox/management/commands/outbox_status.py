"""
manage.py outbox_status: the outbox's health for people, cron and probes.
"""

import json

from django.core.management.base import CommandError

from clickhouse_outbox import conf
from clickhouse_outbox.dumps.jobs import progress_line
from clickhouse_outbox.management.options import positive_seconds
from clickhouse_outbox.management.output import OutboxCommand
from clickhouse_outbox.operations.status import ROW_STATES, outbox_status
from clickhouse_outbox.text import format_age, plural


class Command(OutboxCommand):
    help = (
        "Show the outbox's health: rows per table that are pending, being sent, waiting to retry or failed, "
        "and the same for deletes (retired users, deleted tags); the age of the oldest unsent row; the last "
        "successful send; subjects that could not be read; the producers that are on; what the last verification "
        "found; a dump job under way. --json prints the same as one JSON object. Exit status: 0 healthy; 1 failed "
        "batches or subjects that could not be read exist, a batch waits to retry after an error, or the last "
        "verification found subjects that differ in ClickHouse and were not repaired since (for as long as that "
        "lasts); 2 the oldest unsent row is older than --max-age (takes precedence over 1)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print one JSON object instead of text.")
        parser.add_argument("--max-age", type=positive_seconds, default=None, metavar="SECONDS",
                            help="Exit with status 2 when the oldest unsent row is older than this (default: "
                                 f"CLICKHOUSE_OUTBOX_STATUS_MAX_AGE_SECS, now {conf.status_max_age_secs():g}).")

    def handle(self, *args, **options):
        max_age = options["max_age"] or conf.status_max_age_secs()
        status = outbox_status()
        code = status.exit_code(max_age)
        if options["json"]:
            self.stdout.write(json.dumps(status.as_dict(max_age), indent=2))
        else:
            self.stdout.write("\n".join(self.text(status, max_age, code)))
        if code:
            raise CommandError("; ".join(status.problems(max_age)), returncode=code)

    def text(self, status, max_age, code):
        verdict = {0: "healthy", 1: "needs attention", 2: "stuck"}[code]
        lines = [f"Outbox at {status.checked_at:%Y-%m-%d %H:%M:%S} UTC: {verdict} (exit status {code})", ""]
        lines.append(f"  {'rows per table':<24}" + "".join(f"{state:>12}" for state in ROW_STATES))
        for table, counts in status.tables.items():
            lines.append(f"  {table:<24}" + "".join(f"{counts.get(state, {}).get('rows', 0):>12,}"
                                                    for state in ROW_STATES))
        lines.append(f"  {'total':<24}" + "".join(f"{status.total(state):>12,}" for state in ROW_STATES))
        if status.deletes:
            lines.append("")
            lines.append(f"  {'deletes (subjects)':<24}" + "".join(f"{state:>12}" for state in ROW_STATES))
            for table, counts in status.deletes.items():
                lines.append(f"  {table:<24}" + "".join(f"{counts.get(state, {}).get('rows', 0):>12,}"
                                                        for state in ROW_STATES))
        lines.append("")
        age = status.oldest_unsent_age
        lines.append("Oldest unsent row: " + (
            f"queued {format_age(age)} ago (allowed: {format_age(max_age)})" if age is not None else "none"))
        lines.append("Last successful send: " + (
            f"{status.last_sent_at:%Y-%m-%d %H:%M:%S} UTC "
            f"({format_age((status.checked_at - status.last_sent_at).total_seconds())} ago)"
            if status.last_sent_at else "never"))
        lines.append(f"Failed batches: {status.failed_batches}")
        if status.requested_snapshots:
            lines.append(f"Snapshots requested by publishes, not yet taken: {status.requested_snapshots:,}")
        if status.server_failure:
            batch = status.server_failure
            lines.append(f"ClickHouse is failing: batch {batch.pk} waits to retry at "
                         f"{batch.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC; last error: {batch.last_error}")
        lines.append(f"Subjects that could not be read: {len(status.failed_snapshots)}")
        lines.extend(f"  {subject}: {error}" if name == "course_structure" else f"  {name} {subject}: {error}"
                     for name, subject, error in status.failed_snapshots[:20])
        if len(status.failed_snapshots) > 20:
            lines.append(f"  and {plural(len(status.failed_snapshots) - 20, 'more')}")
        lines.append(f"Producers on: {', '.join(status.enabled_producers) or 'none'}")
        if status.last_verified_at:
            differing = ", ".join(f"{kind}: {count:,}" for kind, count in status.differing.items()) or "none"
            lines.append(f"Last verification: {status.last_verified_at:%Y-%m-%d %H:%M:%S} UTC; "
                         f"differing since, not repaired: {differing}")
        job = status.active_dump
        lines.append(f"Dump job: {job.pk} ({job.description}): {progress_line(job, status.dump_progress)}"
                     if job else "Dump job: none under way")
        return lines
