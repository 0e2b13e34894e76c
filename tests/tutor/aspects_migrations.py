"""
Aspects' own DDL for the `event_sink` tables the outbox writes, read from a rendered Tutor env.

`tutor config save` renders tutor-contrib-aspects' alembic migrations with the database
names and the cluster settings filled in. We run each `upgrade()` as alembic would (in
`down_revision` order) against a stand-in `op` that only records `op.execute(sql)`, then
keep the statements that create, alter, rename or drop those tables (TABLES), including
the temporary copy a table is renamed to while Aspects re-creates it (RENAME, CREATE,
INSERT ... SELECT * from the copy, DROP of the copy). Anything the stand-in does not know
(another `op` call, an import, a branch in the revision graph, a statement that names one
of the tables in a way we cannot classify) raises, so a change in Aspects fails a test
here instead of being silently left out.
"""

import re
import types
from dataclasses import dataclass, field
from pathlib import Path

#: Where `tutor config save` puts the Aspects plugin's alembic migrations, inside `env`.
VERSIONS = Path("plugins/aspects/apps/aspects/migrations/alembic/versions")
#: The rendered compose file of the init jobs, which names the event_sink database.
JOBS_COMPOSE = Path("local/docker-compose.jobs.yml")
COURSE_TABLES = ("course_overviews", "course_blocks", "course_relationships")
#: Every table the outbox writes (clickhouse_outbox/clickhouse/tables.py), course tables first.
TABLES = (*COURSE_TABLES, "course_enrollment", "user_profile", "external_id", "tag", "taxonomy", "object_tag")

# Statements are matched once whitespace is collapsed to single spaces.
_DDL_VERB = r"(?:CREATE|ALTER|DROP|TRUNCATE|RENAME|EXCHANGE|ATTACH|DETACH|OPTIMIZE)"
# The object a DDL statement acts on: the first qualified name after its verb.
_TARGET = re.compile(rf"^(?P<verb>{_DDL_VERB})\b[^.]*?\b(?P<database>\w+)\.(?P<name>\w+)", re.IGNORECASE)
_INSERT_TARGET = re.compile(r"^INSERT INTO (?P<database>\w+)\.(?P<name>\w+)", re.IGNORECASE)
# The one form of RENAME followed: one table to a new name (whose statements are then followed too).
_RENAME = re.compile(r"^RENAME TABLE (?P<database>\w+)\.(?P<name>\w+) TO (?P<to_database>\w+)\.(?P<to>\w+)$",
                     re.IGNORECASE)
# The one INSERT followed: every row of one followed table copied into another (a re-created table refilled).
_COPY = re.compile(r"^INSERT INTO (?P<database>\w+)\.(?P<name>\w+) SELECT \* FROM (?P<from_database>\w+)\."
                   r"(?P<source>\w+)$", re.IGNORECASE)
# Statements that only read the tables (dictionaries, views and their backfills).
_READER = re.compile(
    r"^(?:CREATE (?:OR REPLACE )?DICTIONARY|CREATE (?:OR REPLACE )?(?:MATERIALIZED )?VIEW"
    r"|INSERT INTO \S+ \(.*?\) SELECT)\b",
    re.IGNORECASE,
)


class UnsupportedMigration(RuntimeError):
    """A migration does something this reader was not written for: extend it, do not skip it."""


@dataclass(frozen=True)
class Statement:
    migration: str  # the file name, e.g. 0007_event_sink.py
    sql: str  # as the migration passed it to op.execute
    kind: str  # "table": DDL on one of the tables, or a copy between them (replayed); "reader": reads one; "other"
    verb: str = ""  # CREATE, ALTER, DROP ... of the object it acts on ("" when none)
    target: str = ""  # database.name of that object

    @property
    def compact(self):
        return compact(self.sql)


@dataclass
class AspectsMigrations:
    database: str
    revisions: list = field(default_factory=list)  # file names, in the order alembic applies them
    head: str = ""  # the last migration's revision id
    statements: list = field(default_factory=list, repr=False)  # every op.execute of every upgrade(), in order

    @property
    def table_ddl(self):
        """The statements that create, alter, rename, refill or drop one of the tables, in the order Aspects runs them."""
        return [statement for statement in self.statements if statement.kind == "table"]

    def migrations_of(self, kind):
        """File names of the migrations with at least one statement of `kind`, in revision order."""
        names = {statement.migration for statement in self.statements if statement.kind == kind}
        return [name for name in self.revisions if name in names]

    def surviving_readers(self):
        """Objects created by a reader statement and not dropped by a later migration."""
        alive = {}
        for statement in self.statements:
            if statement.verb.upper() in ("DROP", "DETACH"):
                alive.pop(statement.target, None)
            elif statement.kind == "reader" and statement.verb.upper() == "CREATE":
                alive[statement.target] = statement.migration
        return alive


def compact(sql):
    return " ".join(sql.split())


def one_statement(sql):
    """The statement compacted, without the trailing semicolon the migrations leave on some."""
    return compact(sql).rstrip(";").rstrip()


def event_sink_database(env_dir):
    """ASPECTS_EVENT_SINK_DATABASE as the rendered aspects init job receives it."""
    text = (Path(env_dir) / JOBS_COMPOSE).read_text()
    names = set(re.findall(r"^\s*ASPECTS_EVENT_SINK_DATABASE:\s*\"?(\w+)\"?\s*$", text, flags=re.MULTILINE))
    if len(names) != 1:
        raise UnsupportedMigration(f"{JOBS_COMPOSE} names the event_sink database {sorted(names) or 'nowhere'}")
    return names.pop()


def read_migrations(env_dir, database=None):
    """Every migration's upgrade() in the rendered `env_dir`, run in revision order and classified."""
    env_dir = Path(env_dir)
    database = database or event_sink_database(env_dir)
    folder = env_dir / VERSIONS
    modules = [load_migration(path) for path in sorted(folder.glob("*.py")) if path.name != "__init__.py"]
    if not modules:
        raise UnsupportedMigration(f"No alembic migrations in {folder}")
    result = AspectsMigrations(database=database)
    followed = set(TABLES)  # grows by the names the tables are renamed to
    for module in revision_order(modules):
        module.upgrade()
        result.revisions.append(module.file_name)
        result.head = module.revision
        for sql in module.op.executed:
            statement = classify(module.file_name, sql, database, followed)
            result.statements.append(statement)
            if statement.kind == "table" and statement.verb.upper() == "RENAME":
                followed.add(_RENAME.match(one_statement(statement.sql)).group("to"))
    return result


def revision_order(modules):
    """The modules from the base to the head, following down_revision as alembic does; one branch only."""
    by_parent = {}
    for module in modules:
        for name in ("branch_labels", "depends_on"):
            if getattr(module, name, None):
                raise UnsupportedMigration(f"{module.file_name} sets {name}; this reader follows one linear history")
        by_parent.setdefault(module.down_revision, []).append(module)
    ordered, parent = [], None
    while parent in by_parent:
        children = by_parent.pop(parent)
        if len(children) != 1:
            names = ", ".join(child.file_name for child in children)
            raise UnsupportedMigration(f"Several migrations follow revision {parent!r}: {names}")
        ordered.append(children[0])
        parent = children[0].revision
    if by_parent:
        stray = ", ".join(module.file_name for group in by_parent.values() for module in group)
        raise UnsupportedMigration(f"Migrations not on the chain from the base revision: {stray}")
    return ordered


class RecordingOp:
    """alembic's `op` for a migration that may only call op.execute(str)."""

    def __init__(self, file_name):
        self.file_name = file_name
        self.executed = []

    def execute(self, sqltext, execution_options=None):
        if not isinstance(sqltext, str) or execution_options is not None:
            raise UnsupportedMigration(f"{self.file_name}: op.execute({sqltext!r}, {execution_options!r})")
        self.executed.append(sqltext)

    def __getattr__(self, name):
        raise UnsupportedMigration(f"{self.file_name} calls op.{name}, which this reader does not record")


class UnusedModule(types.ModuleType):
    """sqlalchemy and clickhouse_sqlalchemy: imported by the migrations, never used by their upgrade()."""

    def __getattr__(self, name):
        raise UnsupportedMigration(f"a migration uses {self.__name__}.{name}, which this reader does not stand in for")


def load_migration(path):
    """Execute a migration file as alembic imports it, with `alembic.op` recording its statements."""
    op = RecordingOp(path.name)
    alembic = types.ModuleType("alembic")
    alembic.op = op
    stand_ins = {"alembic": alembic, "sqlalchemy": UnusedModule("sqlalchemy"),
                 "clickhouse_sqlalchemy": UnusedModule("clickhouse_sqlalchemy")}

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and name in stand_ins:
            return stand_ins[name]
        raise UnsupportedMigration(f"{path.name} imports {name!r}, which this reader does not stand in for")

    builtins = dict(__builtins__ if isinstance(__builtins__, dict) else vars(__builtins__))
    builtins["__import__"] = guarded_import
    module = types.ModuleType(path.stem)
    module.__dict__.update(__builtins__=builtins, __file__=str(path))
    exec(compile(path.read_text(), str(path), "exec"), module.__dict__)  # noqa: S102 - the rendered migration
    for name in ("revision", "down_revision", "upgrade"):
        if not hasattr(module, name):
            raise UnsupportedMigration(f"{path.name} has no {name}")
    module.file_name = path.name
    module.op = op
    return module


def classify(file_name, sql, database, followed=TABLES):
    """
    A Statement: DDL on one of the `followed` tables (or a copy of one into another), a
    reader of one, or unrelated; raises when it cannot tell.
    """
    text = compact(sql)
    match = _TARGET.match(text) or _INSERT_TARGET.match(text)
    verb = match.group("verb") if match and "verb" in match.groupdict() else ("INSERT" if match else "")
    target = f"{match.group('database')}.{match.group('name')}" if match else ""
    followed_target = bool(match) and match.group("name") in followed
    names = "|".join(sorted(followed, key=len, reverse=True))
    mentions = re.findall(rf"(?<![\w])(?:(\w+)\.)?({names})\b", text)
    if followed_target:
        statement = one_statement(sql)
        if match.group("database") != database:
            raise UnsupportedMigration(f"{file_name} acts on {target}, not in {database}: {text[:300]}")
        if ";" in statement:
            raise UnsupportedMigration(f"{file_name}: several statements in one op.execute: {text[:300]}")
        if verb.upper() == "RENAME":
            rename = _RENAME.match(statement)
            if rename and rename.group("to_database") == database:
                return Statement(file_name, sql, "table", verb, target)
        elif verb.upper() == "INSERT":
            copy = _COPY.match(statement)
            if copy and copy.group("from_database") == database and copy.group("source") in followed:
                return Statement(file_name, sql, "table", verb, target)
        else:
            return Statement(file_name, sql, "table", verb, target)
    elif not mentions:
        return Statement(file_name, sql, "other", verb, target)
    elif _READER.match(text) and all(db == database for db, _ in mentions):
        return Statement(file_name, sql, "reader", verb, target)
    raise UnsupportedMigration(
        f"{file_name} names one of the tables in a statement this reader does not understand: {text[:300]}"
    )


def replayable(statement):
    """The statement as one ClickHouse query: without the trailing semicolon the migration leaves on it."""
    return statement.sql.strip().rstrip(";").strip()
