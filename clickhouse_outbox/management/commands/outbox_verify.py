"""
manage.py outbox_verify: compare what ClickHouse holds with what the outbox delivered and
the source holds, and (--repair) dump again what differs.
"""

import json

from django.core.management.base import CommandError

from clickhouse_outbox.clickhouse.backends import get_backend
from clickhouse_outbox.clickhouse.errors import ClickHouseError
from clickhouse_outbox.management.dumping import run_in_foreground, start_or_join
from clickhouse_outbox.management.options import aware_datetime, producer_name
from clickhouse_outbox.management.output import OutboxCommand
from clickhouse_outbox.models import DumpJob, Verdict
from clickhouse_outbox.outbox import registry
from clickhouse_outbox.reconcile.repair import deduplicate, missing_tables, recreate_tables, tables_with_duplicates
from clickhouse_outbox.text import plural

HEALTHY, DIFFERS, STALE_ONLY = 0, 1, 2
#: What makes the exit status 1; stale alone makes it 2.
DIFFERENCES = (Verdict.Kind.ABSENT, Verdict.Kind.MISSING, Verdict.Kind.DUPLICATES, Verdict.Kind.DIFFERS,
               Verdict.Kind.NEVER)


def exit_code(counts):
    if any(counts.get(kind) for kind in DIFFERENCES):
        return DIFFERS
    return STALE_ONLY if counts.get(Verdict.Kind.STALE) else HEALTHY


class Command(OutboxCommand):
    help = (
        "Verify that ClickHouse holds what the outbox delivered: for each subject (every course, enrollment, "
        "profile... of the producers that are on, or of --producer, or the named ones, or those changed since a "
        "time), its latest delivered snapshot against the rows ClickHouse holds for that dump_id, table by table: "
        "missing rows, duplicated rows, none at all; for learners and tags, whether the latest row is what the "
        "source holds now (differs: a row changed by QuerySet.update()); and whether the source has a newer "
        "version (stale). A few "
        "aggregate queries per chunk of subjects. Runs as a job (progress; resumed by celery workers if this "
        "command stops). --repair then dumps again every subject that differs; --deduplicate runs OPTIMIZE ... "
        "FINAL DEDUPLICATE on the tables holding duplicates. Exit status: 0 all ok (or not delivered yet); 1 rows "
        "missing, duplicated, differing from the source or never sent; 2 only stale subjects."
    )
    origin = "outbox_verify"

    def add_arguments(self, parser):
        parser.add_argument("subjects", nargs="*", metavar="SUBJECT",
                            help="Course keys, or the ids of --producer's subjects (default: all of them).")
        parser.add_argument("--producer", action="append", type=producer_name, default=None, metavar="NAME",
                            help="Whose subjects (repeat for several; default: every producer that is on).")
        parser.add_argument("--changed-since", type=aware_datetime, metavar="WHEN",
                            help="Only courses published at or after WHEN (ISO 8601, UTC unless it says otherwise).")
        parser.add_argument("--replicas", choices=[choice.value for choice in DumpJob.Replicas], default="one",
                            help="one: through the configured server (default); each: on every replica of "
                                 "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG['urls'].")
        parser.add_argument("--repair", action="store_true",
                            help="Then dump again every subject that differs (a dump job, run here).")
        parser.add_argument("--deduplicate", action="store_true",
                            help="Then OPTIMIZE TABLE ... FINAL DEDUPLICATE the tables holding duplicated rows "
                                 "(rewrites them: only when asked; --enable-dedup of clickhouse_outbox_schema "
                                 "keeps new duplicates out).")
        parser.add_argument("--cluster", metavar="NAME",
                            help="With --repair: create again ON CLUSTER NAME the tables a replica lost (replication "
                                 "then fetches the other replicas' rows); with --deduplicate: run it ON CLUSTER NAME.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object instead of text.")
        parser.add_argument("--list", type=int, default=20, metavar="N",
                            help="Subjects that differ to list (default: %(default)s).")

    def handle(self, *args, **options):
        names = list(dict.fromkeys(options["producer"] or [p.name for p in registry.enabled_producers()]))
        if not names:
            raise CommandError("No producer is on: name one with --producer.")
        since, subjects = options["changed_since"], options["subjects"]
        if subjects and (since or len(names) > 1):
            raise CommandError("Name the subjects of one --producer at a time, without --changed-since.")
        if since and names != ["course_structure"]:
            if options["producer"]:
                raise CommandError("--changed-since verifies courses only: the platform keeps no such time for the others.")
            names = ["course_structure"]
        job_args = {"producers": names, "repair": options["repair"], "replicas": options["replicas"]}
        if subjects:
            producer = registry.get(names[0])
            try:
                chosen = [(producer.name, producer.parse_subject(subject)) for subject in subjects]
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            scope, job_args["subjects"] = DumpJob.Scope.SELECTED, chosen
        elif since:
            scope, job_args["changed_since"] = DumpJob.Scope.CHANGED, since
        else:
            scope = DumpJob.Scope.ALL
        if options["json"]:
            self.stdout, quiet = _Discard(), self.stdout  # progress would break the JSON
        try:
            job = run_in_foreground(self, start_or_join(self, scope, action=DumpJob.Action.VERIFY, **job_args))
        except ClickHouseError as exc:
            raise CommandError(f"Could not read from ClickHouse: {exc}") from None
        repair_job, recreated = None, []
        job.refresh_from_db()
        lost = missing_tables(job.verdicts.all())
        if options["repair"] and lost and options["cluster"]:
            try:
                recreated = recreate_tables(get_backend(), list(lost), options["cluster"])
            except ClickHouseError as exc:
                raise CommandError(f"Could not create {', '.join(lost)} again: {exc}") from None
        if job.repair_job_id:
            repair_job = run_in_foreground(self, job.repair_job)
        deduplicated = []
        if options["deduplicate"]:
            tables = tables_with_duplicates(job.verdicts.all())
            try:
                deduplicated = deduplicate(get_backend(), tables, options["cluster"])
            except ClickHouseError as exc:
                raise CommandError(f"Could not deduplicate {', '.join(tables)}: {exc}") from None
        if options["json"]:
            self.stdout = quiet
        self.report(job, repair_job, deduplicated, options, lost, recreated)

    def report(self, job, repair_job, deduplicated, options, lost, recreated):
        verdicts = job.verdicts.order_by("producer", "subject")
        counts = {kind: 0 for kind in Verdict.Kind}
        for kind in verdicts.values_list("verdict", flat=True):
            counts[kind] += 1
        # Tables verified by key range keep no verdict of an ok subject: their cursors count them.
        counts[Verdict.Kind.OK] += sum(job.cursors.values_list("rows_ok", flat=True))
        code = exit_code(counts)
        differing = [v for v in verdicts.exclude(verdict__in=[Verdict.Kind.OK, Verdict.Kind.UNDELIVERED])]
        if options["json"]:
            self.stdout.write(json.dumps({
                "job": job.pk, "exit_code": code, "checked": sum(counts.values()),
                "counts": {kind.value: counts[kind] for kind in Verdict.Kind},
                "differ": [{"producer": v.producer, "subject": v.subject, "verdict": v.verdict, "details": v.details}
                           for v in differing],
                "repair_job": repair_job.pk if repair_job else None,
                "deduplicated": deduplicated,
                "missing_tables": lost,
                "recreated": recreated,
            }, indent=2))
        else:
            self.stdout.write(f"{plural(sum(counts.values()), 'subject')} checked: " + ", ".join(
                f"{counts[kind]:,} {kind.label.lower()}" for kind in Verdict.Kind if counts[kind]))
            for verdict in differing[: options["list"]]:
                self.stdout.write(f"  {verdict.producer} {verdict.subject}: {summary(verdict)}")
            if len(differing) > options["list"]:
                self.stdout.write(f"  and {plural(len(differing) - options['list'], 'more')} (--list N, or --json)")
            if counts[Verdict.Kind.DUPLICATES] and not deduplicated:
                self.stdout.write(
                    "Duplicated rows: make the tables keep them out (manage.py clickhouse_outbox_schema --enable-dedup), "
                    "and remove them with outbox_verify --deduplicate (OPTIMIZE ... FINAL DEDUPLICATE)."
                )
            if deduplicated:
                self.stdout.write(f"Deduplicated: {', '.join(deduplicated)}.")
            for table, replicas in lost.items():
                where = ", ".join(replica or "the configured server" for replica in replicas)
                self.stdout.write(f"No table {table} on {where}.")
            for line in recreated:
                self.stdout.write(f"  {line}")
            if lost and not recreated:
                self.stdout.write("Create it again: manage.py clickhouse_outbox_schema --create; on a cluster, "
                                  "outbox_verify --repair --cluster NAME does it ON CLUSTER and replication fetches "
                                  "what the other replicas hold.")
            if repair_job:
                self.stdout.write(f"Repair: dump job {repair_job.pk} queued a new snapshot of each; the drain sends "
                                  "them; verify again after.")
            elif differing and not options["repair"]:
                self.stdout.write("To repair: outbox_verify --repair (dumps again what differs).")
        if code:
            verb = "differs" if len(differing) == 1 else "differ"
            raise CommandError(f"{plural(len(differing), 'subject')} {verb} from what was delivered.", returncode=code)


def summary(verdict):
    from clickhouse_outbox.reconcile.verify import Check  # noqa: PLC0415

    return Check(verdict.subject, verdict.verdict, details=verdict.details).summary()


class _Discard:
    def write(self, *args, **kwargs):
        pass

    def flush(self):
        pass
