"""
Leases and backoff use the database's clock, in UTC whatever the session's time zone.
"""

import uuid
from datetime import timedelta

import pytest
from django.db import connection

from clickhouse_outbox.db import db_now
from clickhouse_outbox.outbox.claim import claim_batch
from tests.factories import CourseSnapshotFactory

pytestmark = pytest.mark.django_db


def test_a_lease_ends_lease_secs_after_database_now(settings):
    settings.CLICKHOUSE_OUTBOX_LEASE_SECS = 120
    CourseSnapshotFactory()
    before = db_now()
    batch = claim_batch(uuid.uuid4())
    after = db_now()
    assert before + timedelta(seconds=119) <= batch.lease_expires_at <= after + timedelta(seconds=121)


def test_mysql_sessions_in_another_time_zone_still_lease_in_utc(settings):
    if connection.vendor != "mysql":
        pytest.skip("only MySQL/MariaDB's CURRENT_TIMESTAMP follows the session time zone")
    settings.CLICKHOUSE_OUTBOX_LEASE_SECS = 120
    CourseSnapshotFactory()
    with connection.cursor() as cursor:
        cursor.execute("SET time_zone = '+05:00'")
    try:
        before = db_now()
        batch = claim_batch(uuid.uuid4())
        assert before + timedelta(seconds=119) <= batch.lease_expires_at <= before + timedelta(seconds=130)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET time_zone = '+00:00'")
