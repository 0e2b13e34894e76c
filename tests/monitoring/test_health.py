"""
/clickhouse_outbox/health, as a probe calls it: 200 when delivery is fine; 503 with JSON
saying what is wrong (the oldest unsent row too old, failed batches, ClickHouse failing or not
answering); 401/403 without staff or the token; never a secret in what it says.
"""

import json

import pytest

from clickhouse_outbox.outbox.drain import drain
from tests.factories import BatchFactory, CourseSnapshotFactory
from tests.monitoring.conftest import TOKEN, age_unsent, bearer

pytestmark = pytest.mark.django_db

URL = "/clickhouse_outbox/health"
DOWN = {"url": "http://127.0.0.1:9", "connect_timeout_secs": 1}  # nothing listens on the discard port


def probe(client, status, **headers):
    response = client.get(URL, **(headers or bearer()))
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert TOKEN.encode() not in response.content
    body = json.loads(response.content)
    assert body["healthy"] is (status == 200)
    return body


def test_a_fresh_backlog_is_healthy(client, token):
    snapshot = CourseSnapshotFactory(course__blocks=5)
    body = probe(client, 200)
    assert body["problems"] == []
    assert body["unsent_rows"] == snapshot.row_count and body["failed_batches"] == 0
    assert body["max_age_seconds"] == 900 and body["clickhouse"] == "not checked"


def test_a_backlog_older_than_the_max_age_is_unhealthy(client, token, settings):
    settings.CLICKHOUSE_OUTBOX_STATUS_MAX_AGE_SECS = 60
    CourseSnapshotFactory(course__blocks=5)
    age_unsent(120)
    body = probe(client, 503)
    assert len(body["problems"]) == 1
    assert body["problems"][0].startswith("the oldest unsent row has waited 2 min (more than 60 s)")
    assert 120 <= body["oldest_unsent_age_seconds"] < 180


def test_a_failed_batch_is_unhealthy_unless_allowed(client, token, settings):
    BatchFactory(row_count=7)
    body = probe(client, 503)
    assert body["problems"] == ["1 batch failed for good (more than 0): retry them in the admin or with "
                                "outbox_requeue --failed"]
    settings.CLICKHOUSE_OUTBOX_HEALTH_MAX_FAILED_BATCHES = 1
    assert probe(client, 200)["failed_batches"] == 1


def test_clickhouse_failing_is_unhealthy(client, token, settings):
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(DOWN, password="hunter2-never-shown")
    CourseSnapshotFactory(course__blocks=5)
    assert drain().batches_retrying == 1  # a real failed connection: the batch waits after a server error
    body = probe(client, 503)
    assert any(problem.startswith("ClickHouse is failing") for problem in body["problems"])
    settings.CLICKHOUSE_OUTBOX_HEALTH_CHECKS_CLICKHOUSE = True
    response = client.get(URL, **bearer())
    assert response.status_code == 503 and b"hunter2" not in response.content
    body = json.loads(response.content)
    assert body["clickhouse"] == "not answering"
    assert any(problem.startswith("ClickHouse did not answer SELECT 1: ") for problem in body["problems"])


@pytest.mark.clickhouse_server
def test_the_clickhouse_check_asks_the_server(client, token, settings, clickhouse_server_config):
    settings.CLICKHOUSE_OUTBOX_HEALTH_CHECKS_CLICKHOUSE = True
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = clickhouse_server_config
    assert probe(client, 200)["clickhouse"] == "answering"
    wrong = "wrong-" + (clickhouse_server_config["password"] or "password") + "-e8a1"
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(clickhouse_server_config, password=wrong)
    response = client.get(URL, **bearer())
    assert response.status_code == 503
    assert wrong.encode() not in response.content
    if clickhouse_server_config["password"]:
        assert clickhouse_server_config["password"].encode() not in response.content
    body = json.loads(response.content)
    assert body["clickhouse"] == "not answering"
    [problem] = body["problems"]
    assert problem.startswith("ClickHouse did not answer SELECT 1: ClickHouse rejected the credentials of user")
    assert "[ClickHouse code 193]" in problem  # the server's own answer: wrong password


def test_without_staff_or_token(client, token):
    anonymous = client.get(URL)
    assert anonymous.status_code == 401 and b"problems" not in anonymous.content
    assert client.get(URL, **bearer("not-the-token")).status_code == 401
    assert client.get(URL, {"token": TOKEN}).status_code == 401  # never from the URL


def test_signed_in_learners_are_forbidden(learner_client, token):
    assert learner_client.get(URL).status_code == 403
    assert learner_client.get(URL, **bearer()).status_code == 200  # the token opens it to anyone holding it


def test_staff_may_probe(staff_client):
    probe(staff_client, 200, HTTP_ACCEPT="application/json")
