"""
Making existing destination tables deduplicate a resent batch (`clickhouse_outbox_schema --enable-dedup`).

Aspects creates its `event_sink` tables as plain MergeTree without a deduplication window,
so a batch resent after a lost acknowledgement or a killed drainer is stored twice there,
and aspects-dbt's `dim_most_recent_course_blocks` (the rows with the latest
`time_last_dumped` per block) then returns every block twice. `ALTER TABLE ... MODIFY
SETTING non_replicated_deduplication_window` changes only the table's metadata: no row is
read, rewritten or removed, and rows stored twice before stay twice. Replicated tables
deduplicate on any version; the setting exists from 21.5, so on an older server a plain
MergeTree table cannot be made to.
"""

import re

from clickhouse_outbox.clickhouse.backends.base import qualified_name, quote_string
from clickhouse_outbox.clickhouse.errors import ClickHouseError
from clickhouse_outbox.clickhouse.schema import CREATE_HINT, DEDUPLICATION_WINDOW, on_cluster, one_session
from clickhouse_outbox.clickhouse.tables import all_tables

SETTING = "non_replicated_deduplication_window"
_WINDOW = re.compile(rf"\b{SETTING}\s*=\s*(\d+)")

# What --enable-dedup does with a table, from its engine (see `table_action`).
ENABLE = "enable"
HAS_WINDOW = "has-window"
REPLICATED = "replicated"
OLD_SERVER = "old-server"
FOLDS = "folds"
NOT_MERGE_TREE = "not-merge-tree"


def enable_deduplication(backend, cluster=None, tables=None):
    """
    Give each plain MergeTree-family table without a window `non_replicated_deduplication_window
    = 1000` (ON CLUSTER `cluster` when named). Returns (report, problems): one line per table
    saying what was done or why nothing was needed, and what could not be done.
    """
    tables = all_tables() if tables is None else tables
    report, problems = [], []
    with one_session(backend):
        info = backend.server_info()
        rows = backend.query(
            f"SELECT name, engine, engine_full FROM system.tables WHERE database = {quote_string(backend.database)}"
        )
        existing = {row["name"]: row for row in rows}
        for table in tables:
            name = qualified_name(backend.database, table.name)
            row = existing.get(table.name)
            if row is None:
                problems.append(f"Table {name} does not exist ({CREATE_HINT})")
                continue
            engine = row["engine"]
            action = table_action(engine, row["engine_full"], info)
            if action == ENABLE:
                try:
                    backend.command(alter_sql(backend.database, table.name, cluster))
                except ClickHouseError as exc:
                    problems.append(f"Could not set {SETTING} on {name}{on_cluster(cluster)}: {exc}")
                    continue
                report.append(
                    f"{name} ({engine}): set {SETTING} = {DEDUPLICATION_WINDOW}{on_cluster(cluster)}; "
                    "a resent batch is now stored once (no data was changed)"
                )
            elif action == HAS_WINDOW:
                window = deduplication_window(row["engine_full"])
                report.append(f"{name} ({engine}) already has a deduplication window ({window} blocks); nothing to do")
            elif action == REPLICATED:
                report.append(f"{name} ({engine}) is replicated and deduplicates resent batches already; nothing to do")
            elif action == FOLDS:
                report.append(
                    f"{name} ({engine}) keeps no deduplication window and cannot on ClickHouse {info.version_string}, "
                    "but folds a resent row into the first at its next merge (its readers read it FINAL or through "
                    "a dictionary); nothing to do"
                )
            elif action == OLD_SERVER:
                problems.append(
                    f"{name} ({engine}) keeps no deduplication window, and cannot on this server: ClickHouse "
                    f"{info.version_string} has no {SETTING} (it came in 21.5), so a batch resent after a lost "
                    "acknowledgement may be stored twice there. Upgrade ClickHouse to 21.5 or later, or use "
                    "replicated tables (clickhouse_outbox_schema --create --cluster), which deduplicate on any version"
                )
            else:
                problems.append(f"{name} is a {engine} table: only MergeTree tables can keep a deduplication window")
    return report, problems


def table_action(engine, engine_full, server_info):
    """What --enable-dedup does with a table of `engine` (its `system.tables.engine_full` tells the settings)."""
    if not engine.endswith("MergeTree"):
        return NOT_MERGE_TREE
    if engine.startswith(("Replicated", "Shared")):
        return REPLICATED
    if deduplication_window(engine_full):
        return HAS_WINDOW
    if server_info.supports_non_replicated_deduplication_window:
        return ENABLE
    return FOLDS if engine == "ReplacingMergeTree" else OLD_SERVER


def deduplication_window(engine_full):
    """The table's `non_replicated_deduplication_window` (0 when it sets none)."""
    match = _WINDOW.search(engine_full or "")
    return int(match.group(1)) if match else 0


def alter_sql(database, table_name, cluster=None):
    return (
        f"ALTER TABLE {qualified_name(database, table_name)}{on_cluster(cluster)} "
        f"MODIFY SETTING {SETTING} = {DEDUPLICATION_WINDOW}"
    )
