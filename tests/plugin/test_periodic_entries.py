"""
The periodic verification and sweep in celery beat's schedule, as edx-platform applies the
plugin's settings: `common` at the end of its common settings, then `production` once the
deployment's YAML is read into ENV_TOKENS (a deployment without Tutor sets the intervals
there). Each entry is off unless its interval is above 0, the package's default being 0.
"""

import sys
import types
import uuid

import pytest
from edx_django_utils.plugins import add_plugins

from clickhouse_outbox.schedule import (
    BEAT_ENTRY,
    SWEEP_BEAT_ENTRY,
    SWEEP_TASK,
    VERIFY_BEAT_ENTRY,
    VERIFY_TASK,
    periodic_entry,
)

SWEEP = ("CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS", SWEEP_BEAT_ENTRY, SWEEP_TASK)
VERIFY = ("CLICKHOUSE_OUTBOX_VERIFY_INTERVAL_SECS", VERIFY_BEAT_ENTRY, VERIFY_TASK)


@pytest.fixture(params=["cms.djangoapp", "lms.djangoapp"])
def platform(request, monkeypatch):
    """
    A function returning a fresh settings module standing in for the platform's (the LMS's or
    the CMS's), holding `before_common`, once the plugin's settings are applied to it.
    """

    def apply(env_tokens=None, **before_common):
        module = types.ModuleType(f"settings_standin_{uuid.uuid4().hex[:8]}")
        monkeypatch.setitem(sys.modules, module.__name__, module)
        for name, value in before_common.items():
            setattr(module, name, value)
        add_plugins(module.__name__, request.param, "common")
        module.ENV_TOKENS = env_tokens
        add_plugins(module.__name__, request.param, "production")
        return module

    return apply


def test_intervals_from_env_tokens_install_the_sweep_and_the_verification(platform):
    settings = platform({"CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS": 300, "CLICKHOUSE_OUTBOX_VERIFY_INTERVAL_SECS": 3600})

    assert settings.CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS == 300
    schedule = settings.CELERYBEAT_SCHEDULE
    assert set(schedule) == {BEAT_ENTRY, VERIFY_BEAT_ENTRY, SWEEP_BEAT_ENTRY}
    assert schedule[SWEEP_BEAT_ENTRY] == periodic_entry(SWEEP_TASK, 300)
    assert schedule[VERIFY_BEAT_ENTRY] == periodic_entry(VERIFY_TASK, 3600)
    assert (schedule[SWEEP_BEAT_ENTRY]["schedule"], schedule[SWEEP_BEAT_ENTRY]["options"]["expire_seconds"]) == (300, 300)


@pytest.mark.parametrize("env_tokens", [None, {}, {"CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS": 0,
                                                   "CLICKHOUSE_OUTBOX_VERIFY_INTERVAL_SECS": 0}])
def test_no_periodic_entry_by_default_or_at_0(platform, env_tokens):
    settings = platform(env_tokens)

    assert set(settings.CELERYBEAT_SCHEDULE) == {BEAT_ENTRY}


@pytest.mark.parametrize(("setting", "entry", "task"), [SWEEP, VERIFY])
def test_only_the_sweep_or_only_the_verification(platform, setting, entry, task):
    settings = platform({setting: 600})

    assert set(settings.CELERYBEAT_SCHEDULE) == {BEAT_ENTRY, entry}
    assert settings.CELERYBEAT_SCHEDULE[entry] == periodic_entry(task, 600)


@pytest.mark.parametrize(("setting", "entry", "task"), [SWEEP, VERIFY])
def test_env_tokens_change_or_remove_the_entry_common_installed(platform, setting, entry, task):
    """An interval set before `common` ran, then changed in the YAML: the YAML's value is the one scheduled."""
    changed = platform({setting: 900}, **{setting: 300})
    assert changed.CELERYBEAT_SCHEDULE[entry] == periodic_entry(task, 900)

    removed = platform({setting: 0}, **{setting: 300})
    assert entry not in removed.CELERYBEAT_SCHEDULE


@pytest.mark.parametrize(("setting", "entry", "task"), [SWEEP, VERIFY])
def test_an_entry_the_deployment_wrote_is_kept(platform, setting, entry, task):
    own = {"task": task, "schedule": 42}
    settings = platform({setting: 300}, CELERYBEAT_SCHEDULE={entry: own, "platform.other": {"task": "other"}})

    assert settings.CELERYBEAT_SCHEDULE[entry] is own
    assert settings.CELERYBEAT_SCHEDULE["platform.other"] == {"task": "other"}


@pytest.mark.parametrize("bad", [True, float("nan"), float("inf"), "often", [300]])
def test_a_bad_interval_installs_no_entry_and_the_settings_still_load(platform, bad):
    """The system checks report the value (E010); meanwhile no entry: `True` must not sweep every second."""
    settings = platform({"CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS": bad, "CLICKHOUSE_OUTBOX_VERIFY_INTERVAL_SECS": bad})

    assert set(settings.CELERYBEAT_SCHEDULE) == {BEAT_ENTRY}


def test_an_infinite_drain_interval_is_left_to_the_checks(platform):
    settings = platform({"CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS": float("inf")})

    assert settings.CELERYBEAT_SCHEDULE[BEAT_ENTRY]["schedule"] == float("inf")
