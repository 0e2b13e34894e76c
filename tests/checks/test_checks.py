"""
The Django system checks of clickhouse_outbox/checks.py: each bad setting stops start-up
with its own id, run through Django's check registry (as `manage.py check` and every
start-up run them), and the project's default settings pass.
"""

import pytest
from django.core.checks import Error, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from clickhouse_outbox import conf

GOOD_BACKEND = {"url": "http://clickhouse:8123", "username": "ch_cms", "password": "",
                "database": "event_sink", "timeout_secs": 5, "connect_timeout_secs": 3}


def our_errors():
    """The clickhouse_outbox messages Django's registered checks produce now."""
    return [message for message in run_checks() if message.id and message.id.startswith("clickhouse_outbox.")]


def ids():
    return sorted(message.id for message in our_errors())


@pytest.fixture
def good(settings, tmp_path):
    """A valid configuration to break one piece of at a time."""
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(GOOD_BACKEND)
    settings.CLICKHOUSE_OUTBOX_COURSE_SOURCE = "clickhouse_outbox.sources.olx.OlxFolderSource"
    settings.CLICKHOUSE_OUTBOX_OLX_DIR = str(tmp_path / "courses")
    for name, default in conf.DEFAULTS.items():
        if name not in ("CLICKHOUSE_OUTBOX_COURSE_SOURCE", "CLICKHOUSE_OUTBOX_OLX_DIR"):
            setattr(settings, name, default)
    assert our_errors() == []
    return settings


def backend(settings, **changes):
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(GOOD_BACKEND, **changes)


# --- the project's and the plugin's defaults ---------------------------------------------


def test_project_default_settings_pass_manage_py_check():
    call_command("check")  # raises SystemCheckError on any error
    assert our_errors() == []


def test_plugin_defaults_pass(settings):
    """What a CMS gets from the plugin's own defaults (no setting of ours at all)."""
    for name in ("EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG", *conf.DEFAULTS):
        if hasattr(settings, name):
            delattr(settings, name)
    assert our_errors() == []


def test_manage_py_check_fails_on_a_bad_setting(good):
    """The checks are registered with Django: `manage.py check` (and start-up) stop on them."""
    good.CLICKHOUSE_OUTBOX_BATCH_ROWS = 0
    with pytest.raises(SystemCheckError, match=r"clickhouse_outbox\.E010"):
        call_command("check")


def test_errors_are_errors_with_hints(good):
    backend(good, url="ftp://clickhouse:8123")
    good.CLICKHOUSE_OUTBOX_BATCH_ROWS = 0
    errors = our_errors()
    assert errors
    for error in errors:
        assert isinstance(error, Error)  # not a warning: start-up must stop
        assert error.hint


# --- the ClickHouse backend configuration ------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://clickhouse:8123", "https://clickhouse.example.org:8443", "chdb:///var/lib/outbox/chdb",
])
def test_good_urls_pass(good, url):
    backend(good, url=url)
    assert ids() == []


@pytest.mark.parametrize("url, shown", [
    ("ftp://clickhouse:8123", "'ftp'"),
    ("clickhouse:8123", "'clickhouse'"),
    ("tcp://clickhouse:9000", "'tcp'"),
    ("127.0.0.1:8123", "no scheme"),
])
def test_e001_bad_scheme(good, url, shown):
    backend(good, url=url)
    (error,) = our_errors()
    assert error.id == "clickhouse_outbox.E001"
    assert "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG['url']" in error.msg
    assert shown in error.msg


@pytest.mark.parametrize(("url", "says"), [(None, "is missing"), ("", "is empty"), (" ", "is empty"),
                                            (8123, "is not a string")])
def test_e001_missing_url(good, url, says):
    backend(good, url=url)
    (error,) = our_errors()
    assert error.id == "clickhouse_outbox.E001"
    assert says in error.msg


@pytest.mark.parametrize("url", [
    "http://ch_cms:S3cret-Pa55word@clickhouse:8123",
    "https://ch_cms:S3cret-Pa55word@clickhouse:8443",
])
def test_e002_credentials_in_url(good, url):
    backend(good, url=url)
    (error,) = our_errors()
    assert error.id == "clickhouse_outbox.E002"
    assert "credentials" in error.msg
    assert "S3cret-Pa55word" not in f"{error.msg} {error.hint} {error!r}"
    assert "S3cret-Pa55word" not in str(error)


def test_e002_password_never_shown_with_other_errors(good):
    """Even with a bad scheme as well, no message repeats the URL's password."""
    backend(good, url="ftp://ch_cms:S3cret-Pa55word@clickhouse:8123")
    errors = our_errors()
    assert sorted(error.id for error in errors) == ["clickhouse_outbox.E001", "clickhouse_outbox.E002"]
    for error in errors:
        assert "S3cret-Pa55word" not in str(error)


def test_e002_user_name_alone_in_url(good):
    backend(good, url="http://ch_cms@clickhouse:8123")
    assert ids() == ["clickhouse_outbox.E002"]


@pytest.mark.parametrize("url", ["chdb:relative/store", "chdb:store", "chdb://"])
def test_e003_relative_chdb_path(good, url):
    backend(good, url=url)
    (error,) = our_errors()
    assert error.id == "clickhouse_outbox.E003"
    assert "absolute path" in error.msg


def test_e003_chdb_url_with_two_slashes(good):
    backend(good, url="chdb://relative/store")
    assert ids() == ["clickhouse_outbox.E003"]


@pytest.mark.parametrize("database", ["event-sink", "event sink", "1events", "", None, "db;DROP", "a.b", 42])
def test_e004_bad_database_name(good, database):
    backend(good, database=database)
    (error,) = our_errors()
    assert error.id == "clickhouse_outbox.E004"
    assert "['database']" in error.msg


@pytest.mark.parametrize("database", ["event_sink", "_x", "Reporting2"])
def test_good_database_names_pass(good, database):
    backend(good, database=database)
    assert ids() == []


@pytest.mark.parametrize("key", ["timeout_secs", "connect_timeout_secs"])
@pytest.mark.parametrize("value", [0, -1, 0.0, "5", None, True, [5]])
def test_e005_bad_timeouts(good, key, value):
    backend(good, **{key: value})
    errors = our_errors()
    assert [error.id for error in errors] == ["clickhouse_outbox.E005"]
    assert repr(key) in errors[0].msg


def test_e005_both_timeouts_reported(good):
    backend(good, timeout_secs=0, connect_timeout_secs="3")
    assert ids() == ["clickhouse_outbox.E005", "clickhouse_outbox.E005"]


def test_e005_fractional_timeouts_pass(good):
    backend(good, timeout_secs=0.5, connect_timeout_secs=0.25)
    assert ids() == []


# --- the outbox's numbers ----------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, 1_000_001, 2_000_000, "50000", "", None, True, [50_000]])
def test_e010_batch_rows_out_of_range(good, value):
    good.CLICKHOUSE_OUTBOX_BATCH_ROWS = value
    (error,) = our_errors()
    assert error.id == "clickhouse_outbox.E010"
    assert "CLICKHOUSE_OUTBOX_BATCH_ROWS" in error.msg
    assert "1 to 1000000" in error.msg
    assert "200000" in error.hint, "the hint names the default"


@pytest.mark.parametrize("value", [1, 1_000_000, 50_000])
def test_batch_rows_limits_pass(good, value):
    good.CLICKHOUSE_OUTBOX_BATCH_ROWS = value
    assert ids() == []


@pytest.mark.parametrize("name", sorted(setting.name for setting in conf.SETTINGS
                                         if setting.type in (int, float) and not setting.choices))
@pytest.mark.parametrize("value", ["strings", -1, 10**15, False])  # 10**15: past every range (bytes too)
def test_e010_every_number_setting(good, name, value):
    setattr(good, name, value)
    errors = our_errors()
    assert [error.id for error in errors] == ["clickhouse_outbox.E010"]
    assert name in errors[0].msg


def test_e010_reports_each_bad_setting(good):
    good.CLICKHOUSE_OUTBOX_BATCH_ROWS = 0
    good.CLICKHOUSE_OUTBOX_MAX_ATTEMPTS = "12"
    errors = our_errors()
    assert sorted(error.id for error in errors) == ["clickhouse_outbox.E010"] * 2
    assert {"CLICKHOUSE_OUTBOX_BATCH_ROWS", "CLICKHOUSE_OUTBOX_MAX_ATTEMPTS"} == {
        error.msg.split()[0] for error in errors
    }


@pytest.mark.parametrize("lease, timeout, connect, bad", [
    (8, 5, 3, True),     # equal to connect + read: not longer
    (7, 5, 3, True),
    (9, 5, 3, False),
    (10, 5, 5, True),
    (11, 5, 5, False),
    (60, 30, 31, True),
])
def test_e011_lease_not_longer_than_timeouts(good, lease, timeout, connect, bad):
    good.CLICKHOUSE_OUTBOX_LEASE_SECS = lease
    backend(good, timeout_secs=timeout, connect_timeout_secs=connect)
    assert ids() == (["clickhouse_outbox.E011"] if bad else [])


def test_e011_uses_the_default_connect_timeout(good):
    """A config without connect_timeout_secs gets the default 3 s, which counts too."""
    config = dict(GOOD_BACKEND, timeout_secs=5)
    del config["connect_timeout_secs"]
    good.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = config
    good.CLICKHOUSE_OUTBOX_LEASE_SECS = 8
    assert ids() == ["clickhouse_outbox.E011"]


@pytest.mark.parametrize("base, cap, bad", [(5, 4, True), (5, 5, False), (5, 3600, False), (60, 59.5, True)])
def test_e012_backoff_cap_below_base(good, base, cap, bad):
    good.CLICKHOUSE_OUTBOX_BACKOFF_BASE_SECS = base
    good.CLICKHOUSE_OUTBOX_BACKOFF_MAX_SECS = cap
    assert ids() == (["clickhouse_outbox.E012"] if bad else [])


# --- the course source -------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "clickhouse_outbox.sources.no_such_module.Source",
    "clickhouse_outbox.sources.olx.NoSuchSource",
    "not_a_dotted_path",
])
def test_e020_unimportable_course_source(good, path):
    good.CLICKHOUSE_OUTBOX_COURSE_SOURCE = path
    (error,) = our_errors()
    assert error.id == "clickhouse_outbox.E020"
    assert repr(path) in error.msg


def test_modulestore_source_passes_outside_the_platform(good):
    """Its import needs edx-platform, so the check does not try it."""
    good.CLICKHOUSE_OUTBOX_COURSE_SOURCE = "clickhouse_outbox.sources.modulestore.ModulestoreSource"
    good.CLICKHOUSE_OUTBOX_OLX_DIR = ""
    assert ids() == []


@pytest.mark.parametrize("folder", ["", None])
def test_e021_olx_source_without_folder(good, folder):
    good.CLICKHOUSE_OUTBOX_OLX_DIR = folder
    (error,) = our_errors()
    assert error.id == "clickhouse_outbox.E021"
    assert "CLICKHOUSE_OUTBOX_OLX_DIR" in error.msg


def test_e021_not_raised_for_a_source_that_needs_no_folder(good):
    good.CLICKHOUSE_OUTBOX_COURSE_SOURCE = "tests.factories.MemorySource"
    good.CLICKHOUSE_OUTBOX_OLX_DIR = ""
    assert ids() == []


@pytest.mark.parametrize("value", ["later", "", None, 1])
def test_e013_snapshot_at_is_publish_or_drain(good, value):
    good.CLICKHOUSE_OUTBOX_SNAPSHOT_AT = value
    assert [error.id for error in our_errors()] == ["clickhouse_outbox.E013"]


@pytest.mark.parametrize("value", ["publish", "drain"])
def test_e013_accepts_both_modes(good, value):
    good.CLICKHOUSE_OUTBOX_SNAPSHOT_AT = value
    assert our_errors() == []


@pytest.mark.parametrize("value", ["false", "True", 0, 1, None])
def test_e014_claim_locks_is_true_or_false(good, value):
    good.CLICKHOUSE_OUTBOX_CLAIM_LOCKS = value
    assert [error.id for error in our_errors()] == ["clickhouse_outbox.E014"]


@pytest.mark.parametrize("value", [True, False])
def test_e014_accepts_true_and_false(good, value):
    good.CLICKHOUSE_OUTBOX_CLAIM_LOCKS = value
    assert our_errors() == []


@pytest.mark.parametrize("name", sorted(setting.name for setting in conf.SETTINGS
                                         if setting.type in (bool, str) and not setting.choices))
def test_e014_every_boolean_and_string_setting(good, name):
    setattr(good, name, 12345)
    errors = our_errors()
    assert [error.id for error in errors] == ["clickhouse_outbox.E014"]
    assert name in errors[0].msg


# -- producers -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["yes", 1, 0, "True"])
def test_e030_a_producer_switch_is_true_false_or_none(good, value):
    good.CLICKHOUSE_OUTBOX_USER_PROFILE_ENABLED = value
    assert ids() == ["clickhouse_outbox.E030"]
    assert "CLICKHOUSE_OUTBOX_USER_PROFILE_ENABLED" in our_errors()[0].msg


@pytest.mark.parametrize("value", ["user_profile", [1], {"user_profile": True}])
def test_e031_pii_models_is_a_list_of_names(good, value):
    good.EVENT_SINK_CLICKHOUSE_PII_MODELS = value
    assert ids() == ["clickhouse_outbox.E031"]


def test_w032_a_pii_model_that_is_no_table_of_the_outbox(good):
    good.EVENT_SINK_CLICKHOUSE_PII_MODELS = ["user_profile", "auth_user", "user_profle"]
    assert ids() == ["clickhouse_outbox.W032"]  # auth_user, the peer's retirement sink, is expected there
    assert "'user_profle'" in our_errors()[0].msg


def test_w033_the_peers_sink_writing_the_same_table(good, monkeypatch):
    from django.apps import apps

    good.EVENT_SINK_CLICKHOUSE_COURSE_ENROLLMENT_ENABLED = True  # the peer's switch: ours follows it, on
    assert ids() == []  # platform-plugin-aspects is not installed here: nothing writes twice
    real = apps.is_installed
    monkeypatch.setattr(apps, "is_installed", lambda name: name == "platform_plugin_aspects" or real(name))
    good.CLICKHOUSE_OUTBOX_COURSE_ENROLLMENT_ENABLED = None
    assert ids() == ["clickhouse_outbox.W033"]
    assert "EVENT_SINK_CLICKHOUSE_COURSE_ENROLLMENT_ENABLED = False" in our_errors()[0].hint
    good.CLICKHOUSE_OUTBOX_COURSE_ENROLLMENT_ENABLED = False
    assert ids() == []


def test_w034_a_producer_on_whose_model_is_not_installed(good):
    from clickhouse_outbox.sources.platform import forget_models

    good.EVENT_SINK_CLICKHOUSE_MODEL_CONFIG = {**good.EVENT_SINK_CLICKHOUSE_MODEL_CONFIG,
                                               "external_id": {"module": "nowhere.models", "model": "ExternalId"}}
    good.CLICKHOUSE_OUTBOX_EXTERNAL_ID_ENABLED = True
    forget_models()
    try:
        assert ids() == ["clickhouse_outbox.W034"]
    finally:
        forget_models()
