"""
The Open edX plugin wiring, driven by edx-django-utils' own plugin functions outside the
platform: the `cms.djangoapp` entry point, the settings each settings type applies, and
the COURSE_PUBLISHED receiver `connect_plugin_receivers` connects.

edx-platform is not installable here, so the settings module the plugin functions update
is a fresh module object, and `xmodule.modulestore.django` is a stand-in under
tests/standins (on sys.path only while a test uses the `xmodule_standin` fixture).
"""

import contextlib
import copy
import importlib
import importlib.util
import sys
import types
import uuid
import weakref
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from edx_django_utils.plugins import add_plugins, connect_plugin_receivers, get_plugin_apps
from opaque_keys.edx.keys import CourseKey

from clickhouse_outbox import conf
from clickhouse_outbox.models import OutboxEntry, Snapshot
from clickhouse_outbox.producers.course_structure import PRODUCER

PROJECT = "cms.djangoapp"
APP_CONFIG_PATH = "clickhouse_outbox.apps.ClickhouseOutboxConfig"
STANDINS_DIR = Path(__file__).resolve().parent.parent / "standins"
DISPATCH_UID = "clickhouse_outbox.course_published"

#: The sample course's rows per table: 1 overview; 46 tree blocks + 6 detached blocks;
#: 45 parent -> child edges (see clickhouse_outbox.sources.olx.SAMPLE_COURSE_DIR).
SAMPLE_ROWS = {"course_overviews": 1, "course_blocks": 52, "course_relationships": 45}

#: The task and interval the beat entry must name.
DRAIN_TASK = "clickhouse_outbox.tasks.drain_outbox"
BEAT_ENTRY = "clickhouse_outbox.drain"


# --- helpers and fixtures ---------------------------------------------------------------


@pytest.fixture
def settings_module(monkeypatch):
    """
    A settings-module stand-in (the platform's cms/envs/common.py & co.): a fresh module
    registered in sys.modules, so add_plugins imports it by its dotted path.
    """
    name = f"cms_settings_standin_{uuid.uuid4().hex[:8]}"
    module = types.ModuleType(name)
    monkeypatch.setitem(sys.modules, name, module)
    return module


def plugin_names(module):
    """The attributes of `module` a plugin could have set (upper-case names)."""
    return {name for name in vars(module) if name.isupper()}


def entries_per_table(snapshot):
    counts = {}
    for entry in OutboxEntry.objects.filter(snapshot=snapshot):
        counts[entry.table] = counts.get(entry.table, 0) + entry.row_count
    return counts


@contextlib.contextmanager
def standin_signal(package, module, name, dispatch_uid):
    """
    Make the stand-in `module` under tests/standins (edx-platform, not installable, provides
    the real one) importable for one test and yield its signal `name`; then undo it: the
    path, the imported modules and any receiver connected under `dispatch_uid`.
    """
    assert importlib.util.find_spec(package) is None, f"a real {package} is importable; the stand-in would hide it"
    sys.path.insert(0, str(STANDINS_DIR))
    importlib.invalidate_caches()
    signal = None
    try:
        signal = getattr(importlib.import_module(module), name)
        yield signal
    finally:
        if signal is not None:
            signal.disconnect(dispatch_uid=dispatch_uid)
        sys.path.remove(str(STANDINS_DIR))
        for loaded in [loaded for loaded in sys.modules if loaded == package or loaded.startswith(f"{package}.")]:
            del sys.modules[loaded]
        importlib.invalidate_caches()


@pytest.fixture
def xmodule_standin():
    """The modulestore's COURSE_PUBLISHED, from the stand-in xmodule.modulestore.django."""
    with standin_signal("xmodule", "xmodule.modulestore.django", "COURSE_PUBLISHED", DISPATCH_UID) as signal:
        yield signal


def connected_receivers(signal):
    """The functions connected to `signal` (Django keeps weak references to them)."""
    found = []
    for entry in signal.receivers:
        ref = entry[1]
        found.append(ref() if isinstance(ref, weakref.ReferenceType) else ref)
    return found


# --- get_plugin_apps ----------------------------------------------------------------------


def test_entry_point_is_registered_for_the_cms():
    """setup.py's `cms.djangoapp` entry point is installed and names the AppConfig."""
    found = {ep.name: ep.value for ep in entry_points(group=PROJECT)}
    assert found.get("clickhouse_outbox") == "clickhouse_outbox.apps:ClickhouseOutboxConfig"


def test_get_plugin_apps_finds_the_app_config():
    """edx-platform adds get_plugin_apps(CMS) to INSTALLED_APPS: our AppConfig must be in it."""
    apps = get_plugin_apps(PROJECT)
    assert APP_CONFIG_PATH in apps
    assert APP_CONFIG_PATH in get_plugin_apps("lms.djangoapp"), "enrollments, profiles and retirements happen in the LMS"


def test_plugin_app_config_is_a_usable_app():
    """What the CMS would put in INSTALLED_APPS resolves to an app with a plugin_app dict."""
    from django.apps import apps as django_apps
    from django.utils.module_loading import import_string

    config_class = import_string(APP_CONFIG_PATH)
    assert config_class.name == "clickhouse_outbox"
    assert isinstance(config_class.plugin_app, dict)
    assert django_apps.get_app_config("clickhouse_outbox").__class__ is config_class


# --- add_plugins: common -----------------------------------------------------------------


def test_common_keeps_a_backend_config_the_deployment_set(settings_module):
    deployment_config = {"url": "https://ch.example.org:8443", "username": "u", "password": "p",
                         "database": "reporting", "timeout_secs": 7, "connect_timeout_secs": 2}
    settings_module.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = deployment_config
    expected = copy.deepcopy(deployment_config)

    add_plugins(settings_module.__name__, PROJECT, "common")

    assert settings_module.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG is deployment_config
    assert settings_module.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG == expected


def test_common_installs_the_default_backend_config_as_a_copy(settings_module):
    add_plugins(settings_module.__name__, PROJECT, "common")

    installed = settings_module.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG
    assert installed == {"url": "http://clickhouse:8123", "username": "ch_cms", "password": "",
                         "database": "event_sink", "timeout_secs": 5, "connect_timeout_secs": 3}
    # A deployment that edits the installed dict must not change the plugin's defaults.
    installed["url"] = "http://elsewhere:8123"
    assert conf.DEFAULT_BACKEND_CONFIG["url"] == "http://clickhouse:8123"


def test_common_installs_every_outbox_default(settings_module):
    add_plugins(settings_module.__name__, PROJECT, "common")

    for name, default in conf.DEFAULTS.items():
        assert getattr(settings_module, name) == default, name
    # The values the platform runs with, spelled out (a changed default is a visible change).
    assert settings_module.CLICKHOUSE_OUTBOX_ENABLED is True
    assert settings_module.CLICKHOUSE_OUTBOX_COURSE_SOURCE == "clickhouse_outbox.sources.modulestore.ModulestoreSource"
    assert settings_module.CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS == 10
    assert settings_module.CLICKHOUSE_OUTBOX_BATCH_ROWS == 200_000
    assert plugin_names(settings_module) == {
        "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG", "CELERYBEAT_SCHEDULE", *conf.DEFAULTS,
    }


def test_common_keeps_outbox_settings_the_deployment_set(settings_module):
    settings_module.CLICKHOUSE_OUTBOX_BATCH_ROWS = 1234
    settings_module.CLICKHOUSE_OUTBOX_ENABLED = False
    settings_module.CLICKHOUSE_OUTBOX_COURSE_SOURCE = "clickhouse_outbox.sources.olx.OlxFolderSource"

    add_plugins(settings_module.__name__, PROJECT, "common")

    assert settings_module.CLICKHOUSE_OUTBOX_BATCH_ROWS == 1234
    assert settings_module.CLICKHOUSE_OUTBOX_ENABLED is False
    assert settings_module.CLICKHOUSE_OUTBOX_COURSE_SOURCE == "clickhouse_outbox.sources.olx.OlxFolderSource"
    assert settings_module.CLICKHOUSE_OUTBOX_LEASE_SECS == conf.DEFAULTS["CLICKHOUSE_OUTBOX_LEASE_SECS"]


def test_common_installs_the_beat_schedule_entry(settings_module):
    add_plugins(settings_module.__name__, PROJECT, "common")

    assert settings_module.CELERYBEAT_SCHEDULE == {
        BEAT_ENTRY: {"task": DRAIN_TASK, "schedule": 10, "options": {"expires": 10, "expire_seconds": 10}},
    }


def test_beat_entry_names_the_registered_task():
    """The entry's task name is the name the celery task is registered under."""
    from celery import current_app

    from clickhouse_outbox import tasks

    assert tasks.drain_outbox.name == DRAIN_TASK
    assert DRAIN_TASK in current_app.tasks


def test_common_beat_entry_follows_the_deployment_interval_and_keeps_other_entries(settings_module):
    other = {"task": "cms.other", "schedule": 60}
    settings_module.CELERYBEAT_SCHEDULE = {"platform.other": other}
    settings_module.CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS = 30

    add_plugins(settings_module.__name__, PROJECT, "common")

    schedule = settings_module.CELERYBEAT_SCHEDULE
    assert schedule["platform.other"] is other
    assert schedule[BEAT_ENTRY]["task"] == DRAIN_TASK
    assert schedule[BEAT_ENTRY]["schedule"] == 30
    assert schedule[BEAT_ENTRY]["options"]["expires"] == 30, "a run not started by the next one must expire"


def test_common_keeps_a_beat_entry_the_deployment_wrote(settings_module):
    own = {"task": DRAIN_TASK, "schedule": 120, "options": {"expires": 100}}
    settings_module.CELERYBEAT_SCHEDULE = {BEAT_ENTRY: own}

    add_plugins(settings_module.__name__, PROJECT, "common")

    assert settings_module.CELERYBEAT_SCHEDULE[BEAT_ENTRY] is own
    assert own == {"task": DRAIN_TASK, "schedule": 120, "options": {"expires": 100}}


# --- add_plugins: production and test ----------------------------------------------------


def test_production_reads_env_tokens(settings_module):
    add_plugins(settings_module.__name__, PROJECT, "common")
    yaml_config = {"url": "https://clickhouse.internal:8443", "username": "cms", "password": "from-yaml",
                   "database": "event_sink", "timeout_secs": 9, "connect_timeout_secs": 4}
    settings_module.ENV_TOKENS = {
        "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG": yaml_config,
        "CLICKHOUSE_OUTBOX_ENABLED": False,
        "CLICKHOUSE_OUTBOX_BATCH_ROWS": 777,
        "SOMETHING_ELSE": "not ours",
    }

    add_plugins(settings_module.__name__, PROJECT, "production")

    assert settings_module.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG == yaml_config
    assert settings_module.CLICKHOUSE_OUTBOX_ENABLED is False
    assert settings_module.CLICKHOUSE_OUTBOX_BATCH_ROWS == 777
    assert not hasattr(settings_module, "SOMETHING_ELSE"), "only the plugin's own names are read from the YAML"
    # Names the YAML does not set keep what common installed.
    assert settings_module.CLICKHOUSE_OUTBOX_LEASE_SECS == 300
    assert settings_module.CLICKHOUSE_OUTBOX_RETENTION_DAYS == 7


@pytest.mark.parametrize("name", sorted(conf.DEFAULTS))
def test_production_reads_every_outbox_setting_from_env_tokens(settings_module, name):
    add_plugins(settings_module.__name__, PROJECT, "common")
    marker = object()
    settings_module.ENV_TOKENS = {name: marker}

    add_plugins(settings_module.__name__, PROJECT, "production")

    assert getattr(settings_module, name) is marker


def test_production_without_env_tokens_changes_nothing(settings_module):
    add_plugins(settings_module.__name__, PROJECT, "common")
    before = {name: copy.deepcopy(getattr(settings_module, name)) for name in plugin_names(settings_module)}
    settings_module.ENV_TOKENS = None  # a YAML with nothing in it

    add_plugins(settings_module.__name__, PROJECT, "production")

    assert {name: getattr(settings_module, name) for name in before} == before


def test_production_interval_from_env_tokens_reaches_the_beat_entry(settings_module):
    add_plugins(settings_module.__name__, PROJECT, "common")
    settings_module.ENV_TOKENS = {"CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS": 60}

    add_plugins(settings_module.__name__, PROJECT, "production")

    entry = settings_module.CELERYBEAT_SCHEDULE[BEAT_ENTRY]
    assert (entry["schedule"], entry["options"]["expires"]) == (60, 60)


def test_test_settings_disable_publishing(settings_module):
    add_plugins(settings_module.__name__, PROJECT, "common")
    assert settings_module.CLICKHOUSE_OUTBOX_ENABLED is True

    add_plugins(settings_module.__name__, PROJECT, "test")

    assert settings_module.CLICKHOUSE_OUTBOX_ENABLED is False
    # Only the switch: the platform's tests still get a complete, valid configuration.
    assert settings_module.CELERYBEAT_SCHEDULE[BEAT_ENTRY]["task"] == DRAIN_TASK
    assert settings_module.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG == conf.DEFAULT_BACKEND_CONFIG


def test_test_settings_override_a_deployment_that_enabled_it(settings_module):
    settings_module.CLICKHOUSE_OUTBOX_ENABLED = True
    add_plugins(settings_module.__name__, PROJECT, "test")
    assert settings_module.CLICKHOUSE_OUTBOX_ENABLED is False


# --- connect_plugin_receivers ------------------------------------------------------------


def test_connect_plugin_receivers_connects_course_published(xmodule_standin):
    from clickhouse_outbox import receivers

    course_published = xmodule_standin
    assert not course_published.has_listeners()

    connect_plugin_receivers(PROJECT)

    assert connected_receivers(course_published) == [receivers.course_published]
    # Connecting again (the platform may call it once per process start-up path) must not
    # connect it twice: the dispatch_uid makes it idempotent.
    connect_plugin_receivers(PROJECT)
    assert len(course_published.receivers) == 1
    # Connected under the dispatch_uid apps.py names, so others can disconnect it by it.
    assert course_published.disconnect(dispatch_uid=DISPATCH_UID)
    assert not course_published.has_listeners()


@pytest.mark.django_db
def test_course_published_queues_a_snapshot(xmodule_standin, sample_course_key):
    course_published = xmodule_standin
    course_published.send_robust(sender=None, course_key=sample_course_key)
    assert Snapshot.objects.count() == 0, "nothing is connected before connect_plugin_receivers"

    connect_plugin_receivers(PROJECT)
    responses = course_published.send_robust(sender=None, course_key=sample_course_key)

    (receiver, response), = responses
    assert not isinstance(response, Exception), response
    snapshot = Snapshot.objects.get()
    assert snapshot.producer == PRODUCER
    assert snapshot.subject == "course-v1:OpenedX+DemoX+2026_T1" == str(sample_course_key)
    assert snapshot.reason == "published"
    assert snapshot.status == Snapshot.Status.QUEUED
    assert snapshot.error == ""
    assert entries_per_table(snapshot) == SAMPLE_ROWS
    assert snapshot.row_count == sum(SAMPLE_ROWS.values())
    assert OutboxEntry.objects.count() == OutboxEntry.objects.filter(snapshot=snapshot).count() >= 3
    assert set(OutboxEntry.objects.values_list("status", flat=True)) == {OutboxEntry.Status.PENDING}


@pytest.mark.django_db
def test_course_published_with_a_string_key(xmodule_standin, sample_course_key):
    """The platform sends a CourseKey, but a string key must work as well."""
    connect_plugin_receivers(PROJECT)
    xmodule_standin.send_robust(sender=None, course_key=str(sample_course_key))
    snapshot = Snapshot.objects.get()
    assert snapshot.status == Snapshot.Status.QUEUED
    assert entries_per_table(snapshot) == SAMPLE_ROWS


@pytest.mark.django_db
def test_course_published_of_an_unknown_course_records_a_failure(xmodule_standin, olx_dir):
    connect_plugin_receivers(PROJECT)
    missing = CourseKey.from_string("course-v1:Nobody+Nothing+2026")

    (receiver, response), = xmodule_standin.send_robust(sender=None, course_key=missing)

    assert not isinstance(response, Exception), "a failure is recorded, not raised into send_robust"
    snapshot = Snapshot.objects.get()
    assert (snapshot.subject, snapshot.reason, snapshot.status) == (str(missing), "published", Snapshot.Status.FAILED)
    assert "CourseNotFound" in snapshot.error and str(missing) in snapshot.error
    assert not OutboxEntry.objects.exists()


@pytest.mark.django_db
def test_course_published_with_the_test_settings_queues_nothing(xmodule_standin, sample_course_key, settings,
                                                               settings_module):
    """The platform's test settings (add_plugins 'test') turn the receiver off."""
    add_plugins(settings_module.__name__, PROJECT, "common")
    add_plugins(settings_module.__name__, PROJECT, "test")
    settings.CLICKHOUSE_OUTBOX_ENABLED = settings_module.CLICKHOUSE_OUTBOX_ENABLED
    connect_plugin_receivers(PROJECT)

    (receiver, response), = xmodule_standin.send_robust(sender=None, course_key=sample_course_key)

    assert not isinstance(response, Exception), response
    assert not Snapshot.objects.exists()
    assert not OutboxEntry.objects.exists()


def test_standin_is_not_importable_outside_its_fixture():
    """The xmodule stand-in must not leak out of the tests above (nor hide a real one)."""
    assert importlib.util.find_spec("xmodule") is None
    assert not [name for name in sys.modules if name == "xmodule" or name.startswith("xmodule.")]
    assert str(STANDINS_DIR) not in sys.path


# --- the LMS: retirement ------------------------------------------------------------------

LMS = "lms.djangoapp"
RETIRE_UID = "clickhouse_outbox.user_retired"


@pytest.fixture
def retirement_standin():
    """The user API's USER_RETIRE_LMS_MISC, from the stand-in openedx.core.djangoapps.user_api.accounts.signals."""
    with standin_signal("openedx", "openedx.core.djangoapps.user_api.accounts.signals", "USER_RETIRE_LMS_MISC",
                        RETIRE_UID) as signal:
        yield signal


def test_the_lms_entry_point_and_settings():
    found = {ep.name: ep.value for ep in entry_points(group=LMS)}
    assert found.get("clickhouse_outbox") == "clickhouse_outbox.apps:ClickhouseOutboxConfig"
    module = types.ModuleType(f"lms_settings_standin_{uuid.uuid4().hex[:8]}")
    sys.modules[module.__name__] = module
    try:
        add_plugins(module.__name__, LMS, "common")
        add_plugins(module.__name__, LMS, "production")
    finally:
        del sys.modules[module.__name__]
    assert module.CLICKHOUSE_OUTBOX_ENABLED is True and "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG" in vars(module)


@pytest.mark.django_db
def test_connect_plugin_receivers_in_the_lms_connects_the_retirement(retirement_standin):
    from django.contrib.auth import get_user_model

    from clickhouse_outbox import receivers
    from clickhouse_outbox.outbox.deletes import RETIREMENT

    connect_plugin_receivers(LMS)
    assert connected_receivers(retirement_standin) == [receivers.user_retired]
    connect_plugin_receivers(LMS)
    assert len(retirement_standin.receivers) == 1

    user = get_user_model().objects.create(username="leaving", email="leaving@example.com")
    retirement_standin.send(sender=None, email=user.email, new_email="retired@invalid", user=user)
    snapshot = Snapshot.objects.get(producer=RETIREMENT)
    assert (snapshot.subject, snapshot.reason) == (str(user.pk), "retired")
    assert sorted(snapshot.entries.values_list("table", flat=True)) == ["external_id", "user_profile"]


def test_retirement_standin_is_not_importable_outside_its_fixture():
    assert importlib.util.find_spec("openedx") is None
    assert str(STANDINS_DIR) not in sys.path
