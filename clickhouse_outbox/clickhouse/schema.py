"""
The destination tables' DDL, and a check of existing tables against the data contract.

Tables are their engine (`MergeTree`, or `ReplacingMergeTree` for the tables Aspects keeps
the latest row of) on one node and its `Replicated` form `... ON CLUSTER` on a cluster,
columns in contract order (the older writers insert positionally). A non-replicated table
keeps a deduplication window where the server has one (21.5+), so a batch resent with the
same `insert_deduplication_token` is written once; note that the window also drops a
byte-identical block inserted without a token, which a dump (unique `dump_id`) never is.
A server too old for a contract type gets the documented fallback (`Bool` -> `UInt8`,
which takes the same JSON values; `LowCardinality(String)` -> `String`), and
`check_schema` accepts it.
"""

import re
from contextlib import nullcontext

from clickhouse_outbox.clickhouse.backends.base import qualified_name, quote_identifier, quote_string
from clickhouse_outbox.clickhouse.tables import all_tables

# Contract type -> type used where the server lacks it (and accepted on any server).
TYPE_FALLBACKS = {"Bool": "UInt8", "LowCardinality(String)": "String"}

REPLICATED_TABLE_PATH = "/clickhouse/tables/{shard}/{database}/{table}"
REPLICA_NAME = "{replica}"
DEDUPLICATION_WINDOW = 1000

# Engines that satisfy the contract: a table's engine on one node, its replicated form on a
# cluster (SharedMergeTree & co are ClickHouse Cloud's replicated engines).


def replicated_engines(table):
    """The engines of `table` on a cluster: Replicated<engine> or Shared<engine>."""
    return frozenset({f"Replicated{table.engine}", f"Shared{table.engine}"})


def accepted_engines(table, cluster=None):
    return replicated_engines(table) if cluster else replicated_engines(table) | {table.engine}

# Case-insensitive spellings ClickHouse accepts for the contract's types.
_TYPE_ALIASES = {
    "bool": "Bool",
    "boolean": "Bool",
    "int": "Int32",
    "integer": "Int32",
    "int4": "Int32",
    "text": "String",
    "varchar": "String",
    "char": "String",
    "string": "String",
    "uuid": "UUID",
    "uint8": "UInt8",
    "int32": "Int32",
    "lowcardinality(string)": "LowCardinality(String)",
}

CREATE_HINT = "run: manage.py clickhouse_outbox_schema --create"
POSITIONAL_NOTE = (
    "the older writers insert positionally (FORMAT CSV without a column list), so their values would land "
    "in the wrong columns"
)


def column_type(type_name, server_info):
    """The type to create a contract column with on this server."""
    if type_name == "Bool" and not server_info.supports_bool:
        return TYPE_FALLBACKS["Bool"]
    if type_name.startswith("LowCardinality(") and not server_info.supports_low_cardinality:
        return TYPE_FALLBACKS.get(type_name, type_name)
    return type_name


def create_database_sql(database, cluster=None):
    return f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}{on_cluster(cluster)}"


def create_table_sql(table, database, server_info, cluster=None):
    columns = ",\n".join(
        f"    {quote_identifier(column.name)} {column_type(column.type, server_info)}" for column in table.columns
    )
    order_by = ", ".join(quote_identifier(name) for name in table.order_by)
    if cluster:
        engine = f"Replicated{table.engine}({quote_string(REPLICATED_TABLE_PATH)}, {quote_string(REPLICA_NAME)})"
        settings = ""
    else:
        engine = table.engine
        settings = ""
        if server_info.supports_non_replicated_deduplication_window:
            settings = f"\nSETTINGS non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}"
    partition = f"\nPARTITION BY {table.partition_by}" if table.partition_by else ""
    return (
        f"CREATE TABLE IF NOT EXISTS {qualified_name(database, table.name)}{on_cluster(cluster)}\n"
        f"(\n{columns}\n)\nENGINE = {engine}{partition}\nORDER BY ({order_by}){settings}"
    )


def create_schema(backend, cluster=None, tables=None):
    """
    Create the database and whichever registered tables are missing; existing ones are left
    as they are (see `check_schema`). Returns one line per database/table saying what it did.
    """
    tables = all_tables() if tables is None else tables
    database = backend.database
    report = []
    with one_session(backend):
        info = backend.server_info()
        if database_exists(backend):
            report.append(f"Found database {quote_identifier(database)}")
            if cluster:  # found on this replica: IF NOT EXISTS ON CLUSTER creates it where it is missing
                backend.command(create_database_sql(database, cluster))
        else:
            backend.command(create_database_sql(database, cluster))
            report.append(f"Created database {quote_identifier(database)}{on_cluster(cluster)}")
        existing = table_engines(backend)
        for table in tables:
            name = qualified_name(database, table.name)
            if table.name in existing:
                report.append(f"Found table {name} ({existing[table.name]}), left as it is; --check compares it")
                if cluster and existing[table.name] in replicated_engines(table):
                    # The same IF NOT EXISTS ... ON CLUSTER: created on a replica that lacks it.
                    backend.command(create_table_sql(table, database, info, cluster))
                    report.append(f"Ensured table {name} on every replica{on_cluster(cluster)}")
            else:
                backend.command(create_table_sql(table, database, info, cluster))
                report.append(f"Created table {name}{on_cluster(cluster)}")
    return report


def check_schema(backend, cluster=None, tables=None):
    """Human-readable differences between the destination tables and the contract; [] when they match."""
    tables = all_tables() if tables is None else tables
    database = backend.database
    with one_session(backend):
        if not database_exists(backend):
            return [f"Database {quote_identifier(database)} does not exist ({CREATE_HINT})"]
        existing = table_engines(backend)
        problems = []
        for table in tables:
            if table.name not in existing:
                problems.append(f"Table {qualified_name(database, table.name)} does not exist ({CREATE_HINT})")
                continue
            problems.extend(_engine_problems(table, database, existing[table.name], cluster))
            problems.extend(table_differences(table, database, describe_table(backend, table.name)))
    return problems


def deduplication_warnings(backend, tables=None):
    """
    Tables that will not deduplicate a resent batch although the server could: plain
    MergeTree tables without `non_replicated_deduplication_window` (as Aspects creates them).
    Not a contract difference: rows still arrive, but a batch resent after a lost
    acknowledgement may be stored twice (as exact duplicates).
    """
    tables = all_tables() if tables is None else tables
    with one_session(backend):
        if not backend.server_info().supports_non_replicated_deduplication_window:
            return []
        rows = backend.query(
            f"SELECT name, engine, engine_full FROM system.tables WHERE database = {quote_string(backend.database)}"
        )
    wanted = {table.name for table in tables}
    warnings = []
    for row in rows:
        # ReplacingMergeTree folds a resent row into the first at its next merge, and Aspects'
        # readers of those tables read them FINAL or through a dictionary: only MergeTree matters.
        if row["name"] not in wanted or row["engine"] != "MergeTree":
            continue
        match = re.search(r"non_replicated_deduplication_window\s*=\s*(\d+)", row["engine_full"])
        if not match or int(match.group(1)) == 0:
            name = qualified_name(backend.database, row["name"])
            warnings.append(
                f"Table {name} keeps no deduplication window, so a batch resent after a lost acknowledgement may be "
                "stored twice; to fix: manage.py clickhouse_outbox_schema --enable-dedup"
            )
    return warnings


def table_differences(table, database, actual_columns):
    """Differences between `table` (the contract) and `actual_columns`, [(name, type), ...] in table order."""
    name = qualified_name(database, table.name)
    expected = {column.name: column.type for column in table.columns}
    actual = dict(actual_columns)
    problems = []
    for column in table.columns:
        if column.name not in actual:
            problems.append(f"{name}: column {quote_identifier(column.name)} ({column.type}) is missing")
        elif not types_match(column.type, actual[column.name]):
            accepted = column.type + (f" (or {TYPE_FALLBACKS[column.type]})" if column.type in TYPE_FALLBACKS else "")
            problems.append(
                f"{name}: column {quote_identifier(column.name)} is {actual[column.name]}, the contract says {accepted}"
            )
    for column_name, column_type_name in actual_columns:
        if column_name not in expected:
            problems.append(
                f"{name}: column {quote_identifier(column_name)} ({column_type_name}) is not in the contract; "
                "the older writers insert positionally and do not send it"
            )
    actual_order = [column_name for column_name, _ in actual_columns if column_name in expected]
    expected_order = [column.name for column in table.columns if column.name in actual]
    if actual_order != expected_order:
        problems.append(
            f"{name}: columns are in the order ({', '.join(actual_order)}) but the contract's order is "
            f"({', '.join(expected_order)}); {POSITIONAL_NOTE}"
        )
    return problems


def types_match(expected, actual):
    """True when a column of type `actual` is the contract's `expected` (or its documented fallback)."""
    actual = normalise_type(actual)
    return actual == normalise_type(expected) or actual == TYPE_FALLBACKS.get(expected)


def normalise_type(type_name):
    """One spelling per type: 'BOOLEAN' -> 'Bool', 'INT' -> 'Int32', 'Nullable( String )' -> 'Nullable(String)'."""
    compact = re.sub(r"\s+", "", type_name or "")
    return _TYPE_ALIASES.get(compact.lower(), compact)


def database_exists(backend):
    rows = backend.query(f"SELECT name FROM system.databases WHERE name = {quote_string(backend.database)}")
    return bool(rows)


def table_engines(backend):
    """{table name: engine} for the tables in the backend's database."""
    rows = backend.query(f"SELECT name, engine FROM system.tables WHERE database = {quote_string(backend.database)}")
    return {row["name"]: row["engine"] for row in rows}


def describe_table(backend, table_name):
    """[(column name, type), ...] in table order (DESCRIBE: 18.16's system.columns has no `position`)."""
    rows = backend.query(f"DESCRIBE TABLE {qualified_name(backend.database, table_name)}")
    return [(row["name"], row["type"]) for row in rows]


def _engine_problems(table, database, engine, cluster):
    if engine in accepted_engines(table, cluster):
        return []
    wanted = (f"Replicated{table.engine} (a cluster was named)" if cluster
              else f"{table.engine} (Replicated{table.engine} on a cluster)")
    return [f"{qualified_name(database, table.name)}: engine is {engine}, the contract says {wanted}"]


def on_cluster(cluster):
    return f" ON CLUSTER {quote_identifier(cluster)}" if cluster else ""


def one_session(backend):
    """Several statements on one chdb session (the store is opened once); a no-op for a server."""
    session = getattr(backend, "session", None)
    return session() if session is not None else nullcontext()
