"""
Database time. Leases, backoff and snapshot times come from the database clock, which all
CMS processes and drainers share, never from one worker's clock.
"""

from datetime import datetime, timedelta, timezone

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import DateTimeField, ExpressionWrapper
from django.db.models.functions import Now

from clickhouse_outbox import conf

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
