"""
The table of settings (clickhouse_outbox/settings/table.py) is the one place a setting is
declared: the reads (`conf.value`), the system checks, the defaults the platform gets, the
annotations and the Tutor plugin all follow it.
"""

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured

from clickhouse_outbox import conf
from clickhouse_outbox.settings import table
from clickhouse_outbox.settings.table import SETTINGS, Setting

NUMBERS = [setting for setting in SETTINGS if setting.type in (int, float) and not setting.choices]


def setting_errors(name):
    return [message for message in run_checks() if message.id and message.id.startswith("clickhouse_outbox.")
            and name in message.msg]


def test_each_setting_is_declared_once_with_a_valid_default():
    names = [setting.name for setting in SETTINGS]
    assert len(names) == len(set(names))
    for setting in SETTINGS:
        assert setting.doc, setting.name
        assert setting.problem(setting.default) is None, setting.name
        if setting in NUMBERS:
            assert setting.low <= setting.default <= setting.high, setting.name
    assert conf.DEFAULTS == {setting.name: setting.default for setting in SETTINGS}


def test_a_default_that_breaks_its_own_rules_cannot_be_declared():
    with pytest.raises(ValueError, match="CLICKHOUSE_OUTBOX_X"):
        Setting("CLICKHOUSE_OUTBOX_X", 0, int, 1, 10, doc="x")


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda setting: setting.name)
def test_value_reads_the_default_with_the_declared_type(settings, setting):
    if hasattr(settings, setting.name):
        delattr(settings, setting.name)
    read = conf.value(setting.name)
    assert read == setting.default
    assert type(read) is setting.type


@pytest.mark.parametrize("setting", NUMBERS, ids=lambda setting: setting.name)
def test_value_and_the_checks_refuse_the_same_values(settings, setting):
    """What the checks refuse, a read refuses too (celery workers never run the checks), with the same words."""
    for bad in ["12", True, None, setting.low - 1, setting.high + 1, float("nan"), [1]]:
        setattr(settings, setting.name, bad)
        (error,) = setting_errors(setting.name)
        assert error.id == "clickhouse_outbox.E010"
        with pytest.raises(ImproperlyConfigured) as caught:
            conf.value(setting.name)
        assert error.msg in str(caught.value)
    for good in [setting.low, setting.high]:
        setattr(settings, setting.name, good)
        assert [error for error in setting_errors(setting.name) if error.id == setting.id] == []
        assert conf.value(setting.name) == good


@pytest.mark.parametrize("name", [setting.name for setting in NUMBERS if setting.type is int])
def test_a_whole_number_setting_never_truncates(settings, name):
    """300.0 reads as 300; 1.5 is refused instead of silently becoming 1."""
    low = table.BY_NAME[name].low
    settings.__setattr__(name, float(low))
    assert conf.value(name) == low and type(conf.value(name)) is int
    settings.__setattr__(name, low + 0.5)
    with pytest.raises(ImproperlyConfigured, match="a whole number"):
        conf.value(name)


@pytest.mark.parametrize(("name", "bad", "check_id"), [
    ("CLICKHOUSE_OUTBOX_ENABLED", "false", "clickhouse_outbox.E014"),  # a string is always true
    ("CLICKHOUSE_OUTBOX_ENABLED", 1, "clickhouse_outbox.E014"),
    ("CLICKHOUSE_OUTBOX_COURSE_SOURCE", None, "clickhouse_outbox.E014"),
    ("CLICKHOUSE_OUTBOX_OLX_DIR", 42, "clickhouse_outbox.E014"),
    ("CLICKHOUSE_OUTBOX_SNAPSHOT_AT", "later", "clickhouse_outbox.E013"),
])
def test_other_types_are_checked_and_read_alike(settings, name, bad, check_id):
    setattr(settings, name, bad)
    errors = setting_errors(name)
    assert [error.id for error in errors] == [check_id]
    with pytest.raises(ImproperlyConfigured) as caught:
        conf.value(name)
    assert errors[0].msg in str(caught.value)


def test_an_unset_folder_reads_as_empty(settings):
    settings.CLICKHOUSE_OUTBOX_OLX_DIR = None
    assert conf.value("CLICKHOUSE_OUTBOX_OLX_DIR") == ""


def test_problems_reports_every_bad_setting_and_then_the_rules_between_them():
    values = {"CLICKHOUSE_OUTBOX_BATCH_ROWS": 0, "CLICKHOUSE_OUTBOX_MAX_ATTEMPTS": "12"}
    assert [problem.id for problem in table.problems(values)] == ["clickhouse_outbox.E010"] * 2
    values = {"CLICKHOUSE_OUTBOX_BACKOFF_BASE_SECS": 10, "CLICKHOUSE_OUTBOX_BACKOFF_MAX_SECS": 5}
    assert [problem.id for problem in table.problems(values)] == ["clickhouse_outbox.E012"]
    assert table.problems({}) == []


def test_the_accessors_read_through_value(settings):
    settings.CLICKHOUSE_OUTBOX_BATCH_ROWS = 1234.0
    assert conf.batch_rows() == 1234 and type(conf.batch_rows()) is int
    settings.CLICKHOUSE_OUTBOX_BATCH_ROWS = "1234"
    with pytest.raises(ImproperlyConfigured, match="CLICKHOUSE_OUTBOX_BATCH_ROWS"):
        conf.batch_rows()
