"""
Producers: what reads a subject (a course, an enrollment, a user's profile, a tag) from the
platform and turns it into rows for its ClickHouse tables.

The outbox, the drain, dump jobs, status, the admin and the commands know a producer only
through this registry, by the name its snapshots carry (`Snapshot.producer`). Each producer
module registers an instance when it is imported; `AppConfig.ready` imports them all. So no
module of the outbox imports a producer, and a new table is a new producer, nothing else.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from clickhouse_outbox import conf
from clickhouse_outbox.clickhouse.tables import register_table
from clickhouse_outbox.sources.base import SubjectSourceError


@dataclass
class Prepared:
    """
    A subject read and serialized, not yet queued: its rows (JSONEachRow lines per table), or
    the error reading it raised. `user_id` names the user whose personal data the rows hold
    (producers of personal data), so a retirement finds them; it is set even when serializing
    failed, as the error may quote the data. `emptied`, where the serializer wrote it as it
    went: {table: its lines joined, dump_id and time_last_dumped emptied}, the digest's input
    (`outbox.unchanged`) without a second pass over the rows.
    """

    subject: str
    dump_id: uuid.UUID
    time_last_dumped: str
    rows: dict | None = None
    error: Exception | None = None
    user_id: int | None = None
    emptied: dict | None = None


class Producer:
    """
    One kind of subject and the tables its rows go to. Subclasses set the class attributes
    and implement `prepare` and `all_subjects` (and `subjects_changed_since` where the source
    can tell).

    `name` is stored in every snapshot: never rename a producer. `peer_model` is the name
    platform-plugin-aspects gives the same data (its EVENT_SINK_CLICKHOUSE_<MODEL>_ENABLED).
    """

    name = ""
    #: Words for one subject and several, and for where they are read from, in messages.
    noun = ("subject", "subjects")
    source_noun = "source"
    tables = ()
    peer_model = ""
    #: Default of CLICKHOUSE_OUTBOX_<NAME>_ENABLED: None follows the peer's switch.
    enabled_by_default = None
    #: A change queues its one row with two INSERTs (`outbox.changes`); its older unsent rows
    #: are superseded when a drainer claims them, not in the change's transaction.
    one_row_capture = False
    #: Subjects a dump job's worker claims at a time, and reads with one call of `prepare`.
    read_at_once = 1000
    #: Whether the sweep (reconcile.sweep) reads its table by key ranges for rows written without a signal.
    sweepable = False
    #: Whether a whole-table dump walks its table by key range (`dumps.ranges`) instead of listing subjects.
    dumps_by_key_range = False

    @property
    def dump_chunk(self):
        return conf.dump_chunk_rows()

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}>"

    @property
    def enabled(self):
        """Whether changes of this producer's subjects queue rows (see conf.producer_enabled)."""
        return conf.producer_enabled(self)

    @property
    def pii(self):
        """Whether a retirement deletes its rows from ClickHouse: one of its tables is in EVENT_SINK_CLICKHOUSE_PII_MODELS."""
        pii_tables = set(conf.pii_tables())
        return any(table.name in pii_tables for table in self.tables)

    @property
    def personal_data(self):
        """
        Whether its rows carry a user's personal data (one of its tables says so): a retirement
        removes them from every copy the outbox keeps and none is queued again, whatever
        EVENT_SINK_CLICKHOUSE_PII_MODELS (`pii`) says. Its snapshots name the user (`user_id`).
        """
        return any(table.personal_data for table in self.tables)

    def user_of_subject(self, subject):
        """The user whose personal data `subject`'s rows hold, or None: a failed snapshot is recorded with it."""
        return None

    def subjects_of_user(self, user_id):
        """The subjects whose rows hold the personal data of `user_id` (a retirement looks for them too)."""
        return []

    def parse_subject(self, value):
        """The subject as stored (a string); ValueError saying what is expected when `value` is not one."""
        text = str(value).strip()
        if not text:
            raise ValueError(f"an empty {self.noun[0]}")
        return text

    def prepare(self, subjects, *, now):
        """A `Prepared` per subject, in order; raises nothing (a failure is kept in `error`)."""
        raise NotImplementedError

    def all_subjects(self):
        """Every subject the source knows, for full dumps (strings, in a stable order)."""
        raise NotImplementedError

    def subjects_changed_since(self, since):
        """Subjects changed at or after `since`; SubjectSourceError where the source cannot tell."""
        raise SubjectSourceError(
            f"The {self.name} producer cannot tell which {self.noun[1]} changed since a time; dump all of them instead."
        )

    def subject_column(self, table):
        """The column of `table` that holds the subject (a verification filters on it), or None."""
        return None

    def versions(self, subjects):
        """
        {subject: when the source's version of it last changed (an aware datetime)}, for the
        subjects the source can tell: a verification calls a subject whose snapshot is older stale.
        """
        return {}

    def knows(self, subject):
        """True if the source knows `subject`; SubjectNotFound (or the error reading it) otherwise."""
        prepared = self.prepare([subject], now=datetime.now(timezone.utc))[0]
        if prepared.error is not None:
            raise prepared.error
        return True

    def deleted(self, subject):
        """
        How a deleted subject leaves ClickHouse: (table, column, values) for each table, or ()
        when its rows are kept (see outbox.deletes).
        """
        return ()


_PRODUCERS = {}


def register(producer):
    """Make `producer` (an instance) and its tables known; returns it."""
    if not producer.name:
        raise ValueError(f"{producer!r} has no name")
    existing = _PRODUCERS.get(producer.name)
    if existing is not None and type(existing) is not type(producer):
        raise ValueError(f"A different producer named {producer.name!r} is already registered: {existing!r}")
    for table in producer.tables:
        register_table(table)
    _PRODUCERS[producer.name] = producer
    return producer


def get(name):
    """The registered producer called `name`; UnknownProducer (a KeyError) if there is none."""
    try:
        return _PRODUCERS[name]
    except KeyError:
        raise UnknownProducer(name) from None


def all_producers():
    """Every registered producer, by name."""
    return [_PRODUCERS[name] for name in sorted(_PRODUCERS)]


def names():
    return sorted(_PRODUCERS)


def enabled_producers():
    return [producer for producer in all_producers() if producer.enabled]


def for_table(table_name):
    """The producers that write `table_name`."""
    return [producer for producer in all_producers() if any(table.name == table_name for table in producer.tables)]


class UnknownProducer(KeyError):
    def __init__(self, name):
        super().__init__(name)
        self.name = name

    def __str__(self):
        return f"no producer is called {self.name!r}; the producers are: {', '.join(names()) or 'none'}"
