"""
Producers whose subject is one row of a platform model (an enrollment, a user's profile, a
tag): read through `sources.platform`, a chunk of subjects with one query, each row
serialized as one line of one table.
"""

import logging
import uuid
from typing import NamedTuple

from django.db import connections, transaction
from django.db.models import ExpressionWrapper, F, Max, TextField
from django.db.models.functions import Cast

from clickhouse_outbox.db import among
from clickhouse_outbox.outbox.registry import Prepared, Producer
from clickhouse_outbox.serializers.encoding import dump_time
from clickhouse_outbox.sources.base import SubjectNotFound, SubjectSourceError
from clickhouse_outbox.sources.platform import describe, get_model

log = logging.getLogger(__name__)

#: The prefix of a `values_raw` field's name in `rows_after`'s query.
RAW = "raw_"


def stored_as_utc(connection):
    """
    Whether a datetime column cast to text gives the UTC time Django's reading would: the
    connection's time zone is UTC (with USE_TZ, unless DATABASES sets another TIME_ZONE).
    """
    return connection.timezone_name == "UTC"


class KeyRange(NamedTuple):
    """What `rows_after` read: the rows, the range's last key (None: no key is left) and whether the table ends there."""

    rows: list
    key_to: int | None
    last: bool


class ModelRowProducer(Producer):
    """
    Subclasses set `model_name` (its key in EVENT_SINK_CLICKHOUSE_MODEL_CONFIG), `table`,
    `serialize(obj, dump_id=, time_last_dumped=)`, and `related` (select_related), and say
    whose personal data a row holds in `user_of`.
    """

    model_name = ""
    table = None
    related = ()
    sweepable = True

    @property
    def tables(self):
        return (self.table,)

    @property
    def peer_model(self):
        return self.model_name

    def model(self):
        return get_model(self.model_name)

    def installed(self):
        return self.model() is not None

    def queryset(self):
        model = self.model()
        if model is None:
            raise SubjectSourceError(
                f"{describe(self.model_name)} (EVENT_SINK_CLICKHOUSE_MODEL_CONFIG[{self.model_name!r}]) "
                f"is not installed here, so {self.noun[1]} cannot be read"
            )
        return model._default_manager.select_related(*self.related)

    def parse_subject(self, value):
        try:
            return str(int(str(value).strip()))
        except ValueError:
            raise ValueError(f"{value!r} is not {self.noun[0]} id (a whole number)") from None

    #: The column of the table that holds the subject (the row's id), if any.
    id_column = "id"

    def subject_column(self, table):
        return self.id_column

    def user_of(self, obj):
        """The user whose personal data the row holds, or None."""
        return None

    #: The model's field naming the user whose personal data a row holds (producers of personal data).
    user_field = "user_id"

    def subjects_of_user(self, user_id):
        model = self.model()
        if model is None or not self.personal_data:
            return []
        return [str(pk) for pk in model._default_manager.filter(**{self.user_field: user_id}).values_list("pk", flat=True)]

    def user_of_subject(self, subject):
        if not self.personal_data:
            return None
        try:
            with transaction.atomic():  # a savepoint: a failing read leaves the caller's transaction usable
                obj = self.queryset().filter(pk=int(subject)).first()
        except Exception as exc:  # noqa: BLE001 (the failure being recorded is the error to raise)
            log.warning("clickhouse_outbox: could not read whose %s %s is (%s); its failed snapshot names no user",
                        self.noun[0], subject, exc)
            return None
        return None if obj is None else self.user_of(obj)

    def serialize(self, obj, *, dump_id, time_last_dumped):
        raise NotImplementedError

    def prepare(self, subjects, *, now):
        time_last_dumped = dump_time(now)
        try:
            found = {str(obj.pk): obj for obj in self.queryset().filter(pk__in=[int(subject) for subject in subjects])}
        except Exception as exc:  # noqa: BLE001 (every subject of the chunk failed the same way)
            return [Prepared(subject, uuid.uuid4(), time_last_dumped, error=exc) for subject in subjects]
        return [self.prepare_row(subject, found.get(subject), time_last_dumped) for subject in subjects]

    def prepare_found(self, obj, *, now):
        """The Prepared of a row the caller read through `queryset()` in this transaction: not read again."""
        return self.prepare_row(str(obj.pk), obj, dump_time(now))

    def prepare_row(self, subject, obj, time_last_dumped):
        dump_id = uuid.uuid4()
        if obj is None:
            error = SubjectNotFound(f"{self.name} {subject}: no such {self.noun[0]}")
            return Prepared(subject, dump_id, time_last_dumped, error=error)
        try:
            line = self.serialize(obj, dump_id=dump_id, time_last_dumped=time_last_dumped)
        except Exception as exc:  # noqa: BLE001 (kept for the caller to raise or record)
            return Prepared(subject, dump_id, time_last_dumped, error=exc, user_id=self.user_of(obj))
        return Prepared(subject, dump_id, time_last_dumped, rows={self.table.name: [line]}, user_id=self.user_of(obj))

    def all_subjects(self):
        return [str(pk) for pk in self.queryset().order_by("pk").values_list("pk", flat=True)]

    # -- whole-table dumps by key range (dumps.ranges) ------------------------------------

    #: The `.values_list()` fields a row is encoded from, joins included, by `values_encoder`
    #: (the same line as `serialize`); a producer that sets them is dumped whole by key range,
    #: one query and one entry per chunk. The first is the primary key.
    values_fields = ()
    #: Of those, the fields read as the text the database holds (the encoder converts each
    #: distinct value once: a CourseKeyField parses every row's key otherwise).
    values_raw = ()
    #: Of those, the datetime fields read cast to text where the database keeps UTC
    #: (`stored_as_utc`), for the encoder to make the line's text of without a datetime in
    #: between (`drf_stored_datetime`): SQLite's driver and Django parse each one otherwise.
    values_datetimes = ()

    def values_encoder(self, *, dump_id, time_last_dumped):
        """A function of one `rows_after` tuple to its line (bytes), compiled once per chunk."""
        raise NotImplementedError
    #: The column of the table that tells rows apart (a chunk's rows share a dump_id).
    key_column = "id"

    @property
    def dumps_by_key_range(self):
        return bool(self.values_fields)

    @property
    def user_index(self):
        """Where a `rows_after` tuple holds the row's user."""
        return self.values_fields.index(self.user_field)

    def rows_after(self, after, limit, *, excluded_users=None):
        """
        The next key range of the table after the key `after`, as a `KeyRange`: its rows in
        key order, as `.values_list()` tuples of `values_fields` (joins for usernames), those
        of `excluded_users` (a queryset of user ids: the retired) left out.

        Two queries: where the range ends (the `limit`-th key above `after`, by the primary
        key's index alone), then the rows within it with their joins. A join in a query
        bounded only by LIMIT may be planned from the joined table: MariaDB walked every
        external id of a type and sorted the rest of the table for each chunk, so the cost
        per row grew with the table.
        """
        table = self.queryset().select_related(None)
        after_key = table.filter(pk__gt=after)
        bound = next(iter(after_key.order_by("pk").values_list("pk", flat=True)[limit - 1:limit]), None)
        rows = after_key if bound is None else after_key.filter(pk__lte=bound)
        if excluded_users is not None and self.personal_data:
            rows = rows.exclude(**{f"{self.user_field}__in": excluded_users})
        rows = list(self.as_values(rows).order_by("pk"))
        if bound is not None:
            return KeyRange(rows, key_to=bound, last=False)
        # Fewer than `limit` keys are left: the range is the rest of the table (None: nothing is left).
        key_to = rows[-1][0] if rows else after_key.aggregate(last=Max("pk"))["last"]
        return KeyRange(rows, key_to=key_to, last=True)

    def rows_by_key(self, keys):
        """
        The rows `keys` (ids) as `rows_after` tuples, by subject (its id as text): one query,
        no model instance (the deferred drain fills thousands of requests at a time).
        """
        return {str(row[0]): row for row in self.as_values(among(self.queryset().select_related(None), keys))}

    def as_values(self, rows):
        """
        `rows` as `.values_list()` tuples of `values_fields`, those of `values_raw` as the stored
        text, those of `values_datetimes` as text too where the database keeps UTC.
        """
        raw = {f"{RAW}{name}": ExpressionWrapper(F(name), output_field=TextField()) for name in self.values_raw}
        if stored_as_utc(connections[rows.db]):
            raw.update({f"{RAW}{name}": Cast(name, TextField()) for name in self.values_datetimes})
        fields = [f"{RAW}{name}" if f"{RAW}{name}" in raw else name for name in self.values_fields]
        return rows.annotate(**raw).values_list(*fields)

    def estimated_rows(self):
        """How many rows a whole-table dump goes through (a count, once per job)."""
        return self.queryset().select_related(None).count()


class DeletedRowsGo(ModelRowProducer):
    """A producer whose deleted rows are deleted from its table too, by `id` (the peer never sends deletes)."""

    def deleted(self, subject):
        return [(self.table.name, "id", [int(subject)])]
