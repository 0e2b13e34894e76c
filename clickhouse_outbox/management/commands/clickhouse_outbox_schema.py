"""
Create the destination tables in ClickHouse, or check existing ones against the data contract.
"""

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from clickhouse_outbox.clickhouse.backends import get_backend
from clickhouse_outbox.clickhouse.cluster import check_cluster_schema
from clickhouse_outbox.clickhouse.dedup import enable_deduplication
from clickhouse_outbox.clickhouse.errors import ClickHouseError
from clickhouse_outbox.clickhouse.schema import check_schema, create_schema, deduplication_warnings


class Command(BaseCommand):
    help = (
        "Create (--create) or check (--check) the ClickHouse database and tables the outbox writes to "
        "(course_overviews, course_blocks, course_relationships), on the server named by "
        "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG. --create makes only what is missing and never alters a table; "
        "--check lists every difference from the data contract (missing or extra columns, types, column "
        "order) and exits with status 1 if there is any. --enable-dedup makes existing plain MergeTree tables "
        "deduplicate a resent batch (ALTER TABLE ... MODIFY SETTING, no data changed)."
    )

    def add_arguments(self, parser):
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument(
            "--create", action="store_true", help="Create the database and any missing table; report what exists."
        )
        action.add_argument(
            "--check",
            action="store_true",
            help="Compare the database and tables with the contract; print 'schema OK' or every difference.",
        )
        action.add_argument(
            "--enable-dedup",
            action="store_true",
            help=(
                "Set non_replicated_deduplication_window on plain MergeTree tables that lack it (as Aspects creates "
                "them; ClickHouse 21.5+), so a resent batch is stored once; never changes data. Replicated tables "
                "need nothing."
            ),
        )
        parser.add_argument(
            "--cluster",
            metavar="NAME",
            help=(
                "A ClickHouse cluster name: --create runs the DDL ON CLUSTER NAME with ReplicatedMergeTree "
                "tables; --check then checks every replica the cluster lists (over HTTP, with the configured "
                "credentials; replicas on one host need each URL in the config's 'urls') and requires "
                "replicated tables sharing one ZooKeeper path."
            ),
        )

    def handle(self, *args, create=False, check=False, cluster=None, **options):
        try:
            backend = get_backend()
            if options.get("enable_dedup"):
                return self.enable_dedup(backend, cluster)
            if create:
                for line in create_schema(backend, cluster=cluster):
                    self.stdout.write(line)
                return
            checked = []
            if cluster:
                checked, problems = check_cluster_schema(backend, cluster)
            else:
                problems = check_schema(backend)
            warnings = [] if problems else deduplication_warnings(backend)
        except (ClickHouseError, ImproperlyConfigured) as exc:
            raise CommandError(str(exc)) from None
        for warning in warnings:
            self.stderr.write(self.style.WARNING(f"warning: {warning}"))
        if problems:
            lines = "\n".join(f"  - {problem}" for problem in problems)
            raise CommandError(f"The ClickHouse schema differs from the contract:\n{lines}")
        self.stdout.write(self.style.SUCCESS("schema OK"))
        for replica in checked:
            self.stdout.write(f"  checked {replica}")

    def enable_dedup(self, backend, cluster):
        report, problems = enable_deduplication(backend, cluster=cluster)
        for line in report:
            self.stdout.write(line)
        if problems:
            lines = "\n".join(f"  - {problem}" for problem in problems)
            raise CommandError(f"Deduplication could not be enabled everywhere:\n{lines}")
