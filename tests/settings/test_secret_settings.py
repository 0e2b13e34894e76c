"""A secret setting (the monitoring token) is never quoted by a check or an error, even when it is wrong."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from clickhouse_outbox import conf

NUMERIC_TOKEN = 918273645546372819


def test_a_wrong_token_is_described_not_shown(settings):
    settings.CLICKHOUSE_OUTBOX_MONITORING_TOKEN = NUMERIC_TOKEN  # YAML made a number of it
    [problem] = [problem for problem in conf.problems() if "MONITORING_TOKEN" in problem.message]
    assert str(problem).startswith("CLICKHOUSE_OUTBOX_MONITORING_TOKEN is of type int; it must be a string.")
    assert str(NUMERIC_TOKEN) not in str(problem)
    with pytest.raises(ImproperlyConfigured) as caught:
        conf.value("CLICKHOUSE_OUTBOX_MONITORING_TOKEN")
    assert str(NUMERIC_TOKEN) not in str(caught.value)


def test_other_settings_still_show_their_value(settings):
    settings.CLICKHOUSE_OUTBOX_STATSD_PORT = 70000
    [problem] = [problem for problem in conf.problems() if "STATSD_PORT" in problem.message]
    assert "is 70000" in str(problem)
