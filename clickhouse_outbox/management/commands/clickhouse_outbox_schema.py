"""
Create the destination tables in ClickHouse, or check existing ones against the data contract.
"""

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from clickhouse_outbox.clickhouse.backends import get_backend
from clickhouse_outbox.clickhouse.errors import ClickHouseError
from clickhouse_outbox.clickhouse.schema import check_schema, create_schema, deduplication_warnings


class Command(BaseCommand):
    help = (
        "Create (--create) or check (--check) the ClickHouse database and tables the outbox writes to "
        "(course_overviews, course_blocks, course_relationships), on the server named by "
        "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG. --create makes only what is missing and never alters a table; "
        "--check lists every difference from the data contract (missing or extra columns, types, column "
        "order) and exits with status 1 if there is any."
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
        parser.add_argument(
            "--cluster",
            metavar="NAME",
            help=(
                "A ClickHouse cluster name: --create runs the DDL ON CLUSTER NAME with ReplicatedMergeTree "
                "tables; --check then requires replicated tables."
            ),
        )

    def handle(self, *args, create=False, check=False, cluster=None, **options):
        try:
            backend = get_backend()
            if create:
                for line in create_schema(backend, cluster=cluster):
                    self.stdout.write(line)
                return
            problems = check_schema(backend, cluster=cluster)
            warnings = [] if problems else deduplication_warnings(backend)
        except (ClickHouseError, ImproperlyConfigured) as exc:
            raise CommandError(str(exc)) from None
        for warning in warnings:
            self.stderr.write(self.style.WARNING(f"warning: {warning}"))
        if problems:
            lines = "\n".join(f"  - {problem}" for problem in problems)
            raise CommandError(f"The ClickHouse schema differs from the contract:\n{lines}")
        self.stdout.write(self.style.SUCCESS("schema OK"))
