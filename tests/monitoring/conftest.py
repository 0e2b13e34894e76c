"""Fixtures of the monitoring tests: a real outbox state, and callers with and without rights."""

from datetime import timedelta

import pytest

from clickhouse_outbox.models import Batch, OutboxEntry, Snapshot
from clickhouse_outbox.db import db_now

TOKEN = "monitoring-token-3b1f0c9e5a7d4e2f8c6b"


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_user("ops", "ops@example.com", None, is_staff=True)
    client.force_login(user)
    return client


@pytest.fixture
def learner_client(client, django_user_model):
    user = django_user_model.objects.create_user("learner", "learner@example.com", None)
    client.force_login(user)
    return client


@pytest.fixture
def token(settings):
    settings.CLICKHOUSE_OUTBOX_MONITORING_TOKEN = TOKEN
    return TOKEN


def bearer(value=TOKEN):
    return {"HTTP_AUTHORIZATION": f"Bearer {value}"}


def age_unsent(seconds):
    """Make every unsent row (and requested snapshot) look queued `seconds` ago, by the database's clock."""
    then = db_now() - timedelta(seconds=seconds)
    OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING).update(created=then)
    Snapshot.objects.filter(status=Snapshot.Status.REQUESTED).update(created=then)
    Batch.objects.exclude(status=Batch.Status.SENT).update(created=then)
