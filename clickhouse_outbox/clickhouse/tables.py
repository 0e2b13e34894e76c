"""
The destination tables the outbox writes to, as the data contract defines them.

Each producer registers the tables it fills. The outbox stores rows already encoded for a
table, so the drain only needs a table's name and column list to send them; the schema
command needs the types and sort key to create and check the tables.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True)
class Table:
    """A ClickHouse table in the destination database, columns in contract order."""

    name: str
    columns: tuple
    order_by: tuple

    @property
    def column_names(self):
        return tuple(column.name for column in self.columns)


COURSE_OVERVIEWS = Table(
    name="course_overviews",
    columns=(
        Column("org", "String"),
        Column("course_key", "String"),
        Column("display_name", "String"),
        Column("course_start", "String"),
        Column("course_end", "String"),
        Column("enrollment_start", "String"),
        Column("enrollment_end", "String"),
        Column("self_paced", "Bool"),
        Column("course_data_json", "String"),
        Column("created", "String"),
        Column("modified", "String"),
        Column("dump_id", "UUID"),
        Column("time_last_dumped", "String"),
    ),
    order_by=("org", "course_key", "modified", "time_last_dumped"),
)

COURSE_BLOCKS = Table(
    name="course_blocks",
    columns=(
        Column("org", "String"),
        Column("course_key", "String"),
        Column("location", "String"),
        Column("display_name", "String"),
        Column("xblock_data_json", "String"),
        Column("order", "Int32"),
        Column("edited_on", "String"),
        Column("dump_id", "UUID"),
        Column("time_last_dumped", "String"),
    ),
    order_by=("org", "course_key", "location", "edited_on", "order"),
)

COURSE_RELATIONSHIPS = Table(
    name="course_relationships",
    columns=(
        Column("course_key", "String"),
        Column("parent_location", "String"),
        Column("child_location", "String"),
        Column("order", "Int32"),
        Column("dump_id", "UUID"),
        Column("time_last_dumped", "String"),
    ),
    order_by=("course_key", "parent_location", "child_location", "time_last_dumped", "order"),
)

_TABLES = {}


def register_table(table):
    """Make a destination table known to the drain and the schema command."""
    existing = _TABLES.get(table.name)
    if existing is not None and existing != table:
        raise ValueError(f"A different table named {table.name!r} is already registered")
    _TABLES[table.name] = table
    return table


def get_table(name):
    """The registered table called `name`; KeyError if no producer registered it."""
    return _TABLES[name]


def all_tables():
    return list(_TABLES.values())


for _table in (COURSE_OVERVIEWS, COURSE_BLOCKS, COURSE_RELATIONSHIPS):
    register_table(_table)
