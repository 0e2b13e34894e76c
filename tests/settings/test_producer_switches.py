"""
The producers' switches, CLICKHOUSE_OUTBOX_<PRODUCER>_ENABLED: True, False or None (unset,
following the producer's default, then platform-plugin-aspects' switch). The system check
E030 refuses anything else; a worker or web server never runs the checks, so the reader
reads anything else as off (never on: "false" from a YAML file or an environment variable
means off), and logs an error naming the setting once per process.
"""

import logging

import pytest

from clickhouse_outbox import checks, conf
from clickhouse_outbox.producers.course_enrollment import ENROLLMENTS
from clickhouse_outbox.producers.course_structure import COURSES

NOT_BOOLEANS = ["false", "False", "no", "off", "0", "", "true", "yes", 1, 0, 1.0, [], ["x"], {"on": True}]


@pytest.fixture
def switches(settings, monkeypatch):
    """The outbox on, course_structure on by default, course_enrollment following the peer's switch, which is on."""
    monkeypatch.setattr(conf, "_logged_switches", set(), raising=False)
    settings.CLICKHOUSE_OUTBOX_ENABLED = True
    settings.EVENT_SINK_CLICKHOUSE_COURSE_ENROLLMENT_ENABLED = True
    for producer in (COURSES, ENROLLMENTS):
        setattr(settings, conf.producer_setting_name(producer.name), None)
    assert COURSES.enabled and ENROLLMENTS.enabled
    return settings


def e030(settings_name):
    return [message for message in checks.check_producers()
            if message.id == "clickhouse_outbox.E030" and settings_name in message.msg]


@pytest.mark.parametrize("producer", [COURSES, ENROLLMENTS], ids=lambda producer: producer.name)
@pytest.mark.parametrize("value", NOT_BOOLEANS, ids=repr)
def test_a_switch_that_is_not_a_boolean_reads_as_off_and_the_check_reports_it(switches, producer, value):
    """On by default or by the peer's switch: a bad value of its own switch turns it off, never on."""
    name = conf.producer_setting_name(producer.name)
    setattr(switches, name, value)

    assert conf.producer_enabled(producer) is False
    assert producer.enabled is False
    assert conf.producer_switch(producer.name) is False
    assert producer not in conf_enabled_producers()
    (message,) = e030(name)
    assert message.msg == f"{name} is {value!r}; it must be True, False or None."
    assert message.hint


def conf_enabled_producers():
    from clickhouse_outbox.outbox import registry

    return registry.enabled_producers()


@pytest.mark.parametrize(("value", "on"), [(True, True), (False, False)])
def test_true_and_false_switch_a_producer(switches, value, on):
    for producer in (COURSES, ENROLLMENTS):
        setattr(switches, conf.producer_setting_name(producer.name), value)
        assert conf.producer_switch(producer.name) is value
        assert producer.enabled is on
        assert e030(conf.producer_setting_name(producer.name)) == []


@pytest.mark.django_db  # the peer's switch off, its waffle flag is read
def test_unset_follows_the_default_then_the_peer(switches):
    name = conf.producer_setting_name(ENROLLMENTS.name)
    delattr(switches, name)
    assert conf.producer_switch(ENROLLMENTS.name) is None
    assert ENROLLMENTS.enabled is True  # the peer's switch
    switches.EVENT_SINK_CLICKHOUSE_COURSE_ENROLLMENT_ENABLED = False
    assert ENROLLMENTS.enabled is False
    assert COURSES.enabled is True  # its default
    assert e030(name) == []


def test_the_outbox_off_turns_every_producer_off_whatever_its_switch(switches):
    switches.CLICKHOUSE_OUTBOX_ENABLED = False
    switches.CLICKHOUSE_OUTBOX_COURSE_STRUCTURE_ENABLED = True
    assert COURSES.enabled is False


def test_a_bad_switch_is_logged_once_per_setting_and_value(switches, caplog):
    name = conf.producer_setting_name(ENROLLMENTS.name)
    setattr(switches, name, "false")
    with caplog.at_level(logging.ERROR, logger="clickhouse_outbox.conf"):
        for _ in range(3):
            assert ENROLLMENTS.enabled is False
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert name in record.getMessage() and "'false'" in record.getMessage() and "off" in record.getMessage()

    caplog.clear()
    setattr(switches, name, "no")
    with caplog.at_level(logging.ERROR, logger="clickhouse_outbox.conf"):
        assert ENROLLMENTS.enabled is False
        assert ENROLLMENTS.enabled is False
    assert len(caplog.records) == 1 and "'no'" in caplog.records[0].getMessage()


def test_the_check_and_the_reader_share_one_rule(switches):
    name = conf.producer_setting_name(COURSES.name)
    for value in (True, False, None):
        assert conf.switch_problem(name, value) is None
    for value in NOT_BOOLEANS:
        problem = conf.switch_problem(name, value)
        assert problem.id == "clickhouse_outbox.E030" and not problem.is_warning


@pytest.mark.parametrize("value", ["false", "no", 0], ids=repr)
def test_the_retirement_switch_reads_a_value_that_is_not_a_boolean_as_off_too(switches, value):
    """The retirement's own switch (deletes in ClickHouse) follows the same rule, and E030 names it."""
    from clickhouse_outbox.outbox.deletes import RETIREMENT, retirement_enabled

    name = conf.producer_setting_name(RETIREMENT)
    setattr(switches, name, True)
    assert retirement_enabled() is True
    setattr(switches, name, value)
    assert retirement_enabled() is False
    assert e030(name)
