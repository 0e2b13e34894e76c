"""
The destination tables the outbox writes to, as the data contract (and, for the tables
that came later, tutor-contrib-aspects' migrations) defines them.

Each producer registers the tables it fills. The outbox stores rows already encoded for a
table, so the drain only needs a table's name and column list to send them; the schema
command needs the types, engine, partition and sort key to create and check the tables.
"""

from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True)
class Table:
    """
    A ClickHouse table in the destination database, columns in contract order. `engine` is
    its single-node engine (Replicated... on a cluster); `partition_by` a SQL expression;
    `row_key` the columns that tell a snapshot's rows apart (none: one row per snapshot).
    `personal_data`: its rows carry a user's username, email, name or other personal field.
    Such rows are scrubbed from the outbox when their user retires (whatever
    EVENT_SINK_CLICKHOUSE_PII_MODELS says, which decides only what ClickHouse deletes), and
    ClickHouse's error text about them is kept without the rows it quotes.
    """

    name: str
    columns: tuple
    order_by: tuple
    engine: str = "MergeTree"
    partition_by: str = ""
    row_key: tuple = ()
    personal_data: bool = False

    @cached_property
    def column_names(self):
        """Built once: each learner row a drain fills is encoded against it."""
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
    row_key=("location",),
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
    row_key=("parent_location", "child_location"),
)

# The tables Aspects added later (tutor-contrib-aspects 6.1.0 migrations 0016, 0026, 0027, 0031,
# 0036, 0039 and 0040), as those migrations leave them.

COURSE_ENROLLMENT = Table(
    name="course_enrollment",
    columns=(
        Column("id", "Int32"),
        Column("course_key", "String"),
        Column("created", "String"),
        Column("is_active", "Bool"),
        Column("mode", "LowCardinality(String)"),
        Column("username", "String"),
        Column("user_id", "Int32"),
        Column("dump_id", "UUID"),
        Column("time_last_dumped", "String"),
    ),
    order_by=("course_key", "user_id", "time_last_dumped"),
    personal_data=True,  # username
)

USER_PROFILE = Table(
    name="user_profile",
    columns=(
        Column("id", "Int32"),
        Column("user_id", "Int32"),
        Column("name", "String"),
        Column("username", "String"),
        Column("email", "String"),
        *(Column(name, "String") for name in (
            "meta", "courseware", "language", "location", "year_of_birth", "gender", "level_of_education",
            "mailing_address", "city", "country", "state", "goals", "bio", "profile_image_uploaded_at",
            "phone_number",
        )),
        Column("dump_id", "UUID"),
        Column("time_last_dumped", "String"),
    ),
    order_by=("id", "time_last_dumped"),
    engine="ReplacingMergeTree",
    partition_by="user_id % 100",
    personal_data=True,
)

EXTERNAL_ID = Table(
    name="external_id",
    columns=(
        Column("external_user_id", "UUID"),
        Column("external_id_type", "String"),
        Column("username", "String"),
        Column("user_id", "Int32"),
        Column("dump_id", "UUID"),
        Column("time_last_dumped", "String"),
    ),
    order_by=("external_user_id", "time_last_dumped"),
    engine="ReplacingMergeTree",
    partition_by="user_id % 100",
    personal_data=True,
)

TAG = Table(
    name="tag",
    columns=(
        Column("id", "Int32"),
        Column("taxonomy", "Int32"),
        Column("parent", "Int32"),
        Column("value", "String"),
        Column("external_id", "String"),
        Column("lineage", "String"),
        Column("dump_id", "UUID"),
        Column("time_last_dumped", "String"),
    ),
    order_by=("id", "time_last_dumped"),
    engine="ReplacingMergeTree",
)

TAXONOMY = Table(
    name="taxonomy",
    columns=(
        Column("id", "Int32"),
        Column("name", "String"),
        Column("dump_id", "UUID"),
        Column("time_last_dumped", "String"),
    ),
    order_by=("id", "time_last_dumped"),
    engine="ReplacingMergeTree",
)

OBJECT_TAG = Table(
    name="object_tag",
    columns=(
        Column("id", "Int32"),
        Column("object_id", "String"),
        Column("taxonomy", "Int32"),
        Column("tag", "Int32"),
        Column("_value", "String"),
        Column("_export_id", "String"),
        Column("lineage", "String"),
        Column("dump_id", "UUID"),
        Column("time_last_dumped", "String"),
    ),
    order_by=("id", "time_last_dumped"),
    engine="ReplacingMergeTree",
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

