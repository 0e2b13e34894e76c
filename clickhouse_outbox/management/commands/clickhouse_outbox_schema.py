"""
Create the destination tables in ClickHouse, or check existing ones against the data contract.
"""

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from clickhouse_outbox.clickhouse.backends import get_backend
from clickhouse_outbox.clickhouse.cluster import check_cluster_schema
from clickhouse_outbox.clickhouse.dedup import enable_deduplication
from clickhouse_outbox.clickhouse.errors import ClickHouseError
from clickhouse_outbox.clickhouse.schema import check_schema, create_schema, deduplication_warnings
from clickhouse_outbox.management.options import producer_name
from clickhouse_outbox.management.output import OutboxCommand
from clickhouse_outbox.outbox import registry


class Command(OutboxCommand):
    help = (
        "Create (--create) or check (--check) the ClickHouse database and the tables the outbox writes to "
        "(the tables of every producer that is on, or of --producer), on the server named by "
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

        parser.add_argument(
            "--producer", action="append", type=producer_name, default=None, metavar="NAME",
            help=f"Only this producer's tables (repeat for several; {', '.join(registry.names())}). Default: the "
                 "tables of every producer that is on.",
        )

    def handle(self, *args, create=False, check=False, cluster=None, **options):
        tables = self.tables(options["producer"])
        try:
            backend = get_backend()
            if options.get("enable_dedup"):
                return self.enable_dedup(backend, cluster, tables)
            if create:
                for line in create_schema(backend, cluster=cluster, tables=tables):
                    self.stdout.write(line)
                return
            checked = []
            if cluster:
                checked, problems = check_cluster_schema(backend, cluster, tables=tables)
            else:
                problems = check_schema(backend, tables=tables)
            warnings = [] if problems else deduplication_warnings(backend, tables=tables)
        except (ClickHouseError, ImproperlyConfigured) as exc:
            raise CommandError(str(exc)) from None
        for warning in warnings:
            self.stderr.write(f"warning: {warning}", style_func=self.style.WARNING)
        if problems:
            lines = "\n".join(f"  - {problem}" for problem in problems)
            raise CommandError(f"The ClickHouse schema differs from the contract:\n{lines}")
        self.stdout.write("schema OK", style_func=self.style.SUCCESS)
        for replica in checked:
            self.stdout.write(f"  checked {replica}")

    @staticmethod
    def tables(names):
        """The tables of the producers `names` (or of every producer that is on), each once, in producer order."""
        chosen = [registry.get(name) for name in names] if names else registry.enabled_producers()
        if not chosen:
            raise CommandError("No producer is on (CLICKHOUSE_OUTBOX_ENABLED and the per-producer settings): name "
                               "one with --producer.")
        return list({table.name: table for producer in chosen for table in producer.tables}.values())

    def enable_dedup(self, backend, cluster, tables):
        report, problems = enable_deduplication(backend, cluster=cluster, tables=tables)
        for line in report:
            self.stdout.write(line)
        if problems:
            lines = "\n".join(f"  - {problem}" for problem in problems)
            raise CommandError(f"Deduplication could not be enabled everywhere:\n{lines}")
