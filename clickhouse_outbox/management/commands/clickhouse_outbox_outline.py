"""
manage.py clickhouse_outbox_outline COURSE_KEY: what ClickHouse holds for a course, read back.

Shows the latest dump of the course as the Aspects dashboards see it: the rows per table
and the outline with `section:subsection:unit - display_name` labels.
"""

import json

from django.core.management.base import CommandError

from clickhouse_outbox.clickhouse.backends import get_backend
from clickhouse_outbox.clickhouse.backends.base import qualified_name, quote_string
from clickhouse_outbox.clickhouse.errors import ClickHouseError
from clickhouse_outbox.clickhouse.tables import COURSE_BLOCKS, COURSE_OVERVIEWS, COURSE_RELATIONSHIPS
from clickhouse_outbox.management.output import OutboxCommand
from clickhouse_outbox.sources.keys import parse_course_key
from clickhouse_outbox.text import printable

INDENT = {"course": 0, "chapter": 1, "sequential": 2, "vertical": 3}


class Command(OutboxCommand):
    help = (
        "Read a course's latest dump back from ClickHouse: rows per table (course_overviews, course_blocks, "
        "course_relationships) and the outline with section:subsection:unit labels."
    )

    def add_arguments(self, parser):
        parser.add_argument("course_key", metavar="COURSE_KEY")

    def handle(self, *args, **options):
        try:
            course_key = str(parse_course_key(options["course_key"]))
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        backend = get_backend()
        try:
            lines = self.outline(backend, course_key)
        except ClickHouseError as exc:
            raise CommandError(f"Could not read from ClickHouse: {exc}") from None
        finally:
            backend.close()
        self.stdout.write("\n".join(lines))

    def outline(self, backend, course_key):
        db = backend.database
        key = quote_string(course_key)
        latest = backend.query(
            f"SELECT toString(dump_id) AS dump_id, time_last_dumped FROM {qualified_name(db, COURSE_OVERVIEWS.name)} "
            f"WHERE course_key = {key} ORDER BY time_last_dumped DESC LIMIT 1"
        )
        if not latest:
            raise CommandError(f"ClickHouse has no rows for {course_key} in {db}.{COURSE_OVERVIEWS.name} yet.")
        dump_id, dumped = latest[0]["dump_id"], latest[0]["time_last_dumped"]
        where = f"course_key = {key} AND dump_id = {quote_string(dump_id)}"
        lines = [f"{course_key}: dump {dump_id} of {dumped}", "", "Rows in ClickHouse for this dump:"]
        for table in (COURSE_OVERVIEWS, COURSE_BLOCKS, COURSE_RELATIONSHIPS):
            count = backend.query(f"SELECT count() AS n FROM {qualified_name(db, table.name)} WHERE {where}")[0]["n"]
            lines.append(f"  {table.name:<22} {int(count):>6}")
        blocks = backend.query(
            f"SELECT location, display_name, xblock_data_json FROM {qualified_name(db, COURSE_BLOCKS.name)} "
            f"WHERE {where} ORDER BY `order`"
        )
        lines += ["", "Outline (section:subsection:unit - display name):"]
        for block in blocks:
            data = json.loads(block["xblock_data_json"])
            # A course author wrote the name: its newlines too are escaped, so it stays on its line.
            label = f"{data['section']}:{data['subsection']}:{data['unit']} - {printable(block['display_name'])}"
            graded = " [graded]" if data.get("graded") and data["block_type"] == "sequential" else ""
            if data.get("detached"):
                block_id = printable(block["location"].rsplit("@", 1)[-1])
                lines.append(f"    {label}  ({data['block_type']} {block_id}) [detached]")
                continue
            indent = "  " * INDENT.get(data["block_type"], 4)
            lines.append(f"  {indent}{label}  ({data['block_type']}){graded}")
        return lines
