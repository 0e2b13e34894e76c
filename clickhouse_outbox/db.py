"""
The outbox database's clock and lock conflicts, for every layer above.

Leases, backoff and snapshot times come from the database clock, which all CMS processes and
drainers share, never from one worker's clock. A short conditional step that meets a lock
conflict (a deadlock, a lock wait timeout, a busy SQLite) is run again.
"""

import logging
import time
from datetime import datetime, timedelta, timezone

from django.db import DEFAULT_DB_ALIAS, OperationalError, connections
from django.db.models import DateTimeField, ExpressionWrapper
from django.db.models.expressions import RawSQL
from django.db.models.functions import Now

from clickhouse_outbox import conf

log = logging.getLogger(__name__)

_NOW_SQL = {
    "postgresql": "SELECT clock_timestamp()",
    "mysql": "SELECT UTC_TIMESTAMP(6)",
    "sqlite": "SELECT STRFTIME('%Y-%m-%d %H:%M:%f', 'now')",
}


def db_now(using=DEFAULT_DB_ALIAS):
    """The database's current UTC time, as an aware datetime."""
    conn = connections[using]
    with conn.cursor() as cursor:
        cursor.execute(_NOW_SQL.get(conn.vendor, "SELECT CURRENT_TIMESTAMP"))
        value = cursor.fetchone()[0]
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


class UtcNow(Now):
    """
    Django's Now(), but in UTC on MySQL/MariaDB too, where CURRENT_TIMESTAMP follows the
    session's time zone while Django stores datetimes in UTC.
    """

    def as_mysql(self, compiler, connection, **extra_context):
        return self.as_sql(compiler, connection, template="UTC_TIMESTAMP(6)", **extra_context)


def db_time_in(seconds):
    """The database's time `seconds` from now (negative: ago), as an expression for filters and updates."""
    return ExpressionWrapper(UtcNow() + timedelta(seconds=seconds), output_field=DateTimeField())


def lease_end():
    """When a lease taken now ends: CLICKHOUSE_OUTBOX_LEASE_SECS from now, in database time."""
    return db_time_in(conf.lease_secs())


# What databases say when two transactions collide: MySQL/MariaDB deadlock (1213) and lock
# wait timeout (1205), PostgreSQL deadlock (40P01) and serialization failure (40001),
# SQLite's busy database. The statement did nothing; running it again is safe.
LOCK_CONFLICT_CODES = {1213, 1205, "40P01", "40001"}
LOCK_CONFLICT_TRIES = 5


def is_lock_conflict(exc):
    cause = exc.__cause__ or exc
    code = getattr(cause, "sqlstate", None) or (cause.args[0] if cause.args else None)
    return code in LOCK_CONFLICT_CODES or "database is locked" in str(exc)


def retry_lock_conflicts(step, *args):
    """
    Run a claim or finalise step (the drain's, a dump job's), again if the database reports a
    lock conflict. Each step is one short transaction whose updates are conditional, so a
    second run is harmless.
    """
    for attempt in range(1, LOCK_CONFLICT_TRIES + 1):
        try:
            return step(*args)
        except OperationalError as exc:
            if attempt == LOCK_CONFLICT_TRIES or not is_lock_conflict(exc):
                raise
            log.warning("clickhouse_outbox: %s met a lock conflict (%s); trying again", step.__name__, exc)
            time.sleep(0.05 * attempt)
    return None


def among(queryset, ids, field="pk", *, as_text=False):
    """
    `queryset` filtered on `field` IN `ids`, written into the SQL as integers: Django's
    `pk__in=[...]` prepares and resolves each value (about 3 µs apiece), which for the 5,000
    requests a drainer fills at a time cost more than the statements themselves. Each id is
    made an int, so nothing but digits reaches the SQL; `as_text`: `field` is a text column
    holding ids (a Snapshot's subject).
    """
    ids = [int(pk) for pk in ids]
    if not ids:
        return queryset.none()
    listed = ", ".join(f"'{pk}'" for pk in ids) if as_text else ", ".join(map(str, ids))
    return queryset.filter(**{f"{field}__in": RawSQL(listed, ())})
