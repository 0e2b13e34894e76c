"""
The plugin's settings, read at call time so `override_settings` and live changes work.

Each is declared once, in settings/table.py (name, default, type, range, meaning); `value`
reads one, checked and cast as declared, and `problems` says what is wrong with them all
(checks.py turns that into system-check errors).
"""

import logging

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from clickhouse_outbox.settings import table
from clickhouse_outbox.settings.table import BY_NAME as SETTINGS_BY_NAME
from clickhouse_outbox.settings.table import Problem
from clickhouse_outbox.settings.table import DEFAULT_BACKEND_CONFIG, SETTINGS  # noqa: F401 (the package's names for them)

#: {name: default} of every declared setting.
DEFAULTS = {setting.name: setting.default for setting in SETTINGS}

#: platform-plugin-aspects' default EVENT_SINK_CLICKHOUSE_PII_MODELS: the tables a retirement deletes from.
DEFAULT_PII_MODELS = ("user_profile", "external_id")
#: The namespace of the peer's per-model waffle flags (event_sink_clickhouse.<model>.enabled).
PEER_WAFFLE_NAMESPACE = "event_sink_clickhouse"

log = logging.getLogger(__name__)

#: (setting, repr of its value) of each producer switch already logged as invalid in this process.
_logged_switches = set()


def get(name):
    """A declared setting as configured (its default when unset), unchecked: what the checks look at."""
    return getattr(settings, name, DEFAULTS[name])


def value(name):
    """
    A declared setting, checked and cast as declared (an int setting reads as an int). A bad
    value raises ImproperlyConfigured with the system check's message: celery workers and
    web servers never run the checks, and a cast must never change what a value means.
    """
    setting = SETTINGS_BY_NAME[name]
    configured = getattr(settings, name, setting.default)
    problem = setting.problem(configured)
    if problem is not None:
        raise ImproperlyConfigured(str(problem))
    return setting.cast(configured)


def problems():
    """Every Problem of the declared settings as configured now (for the system checks)."""
    return table.problems({setting.name: get(setting.name) for setting in SETTINGS})


def backend_config():
    """
    EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG, the seed plugin's setting, with defaults filled in
    (not the default `url` when the setting lists replicas in `urls`).
    """
    configured = getattr(settings, "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG", None) or {}
    if not isinstance(configured, dict):
        return configured  # config.parse says what to write instead
    config = dict(DEFAULT_BACKEND_CONFIG)
    if configured.get("urls") is not None:
        del config["url"]  # the default url would disagree with the replicas the deployment lists
    config.update(configured)
    return config


# One accessor per setting that had one before the table: a new setting needs none, read it
# with value("CLICKHOUSE_OUTBOX_...").


def enabled():
    return value("CLICKHOUSE_OUTBOX_ENABLED")


def course_source_path():
    return value("CLICKHOUSE_OUTBOX_COURSE_SOURCE")


def olx_dir():
    return value("CLICKHOUSE_OUTBOX_OLX_DIR")


def olx_max_file_bytes():
    return value("CLICKHOUSE_OUTBOX_OLX_MAX_FILE_BYTES")


def olx_max_value_bytes():
    return value("CLICKHOUSE_OUTBOX_OLX_MAX_VALUE_BYTES")


def olx_max_depth():
    return value("CLICKHOUSE_OUTBOX_OLX_MAX_DEPTH")


def olx_max_export_bytes():
    return value("CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_BYTES")


def olx_max_export_files():
    return value("CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_FILES")


def olx_max_blocks():
    return value("CLICKHOUSE_OUTBOX_OLX_MAX_BLOCKS")


def batch_rows():
    return value("CLICKHOUSE_OUTBOX_BATCH_ROWS")


def entry_max_bytes():
    return value("CLICKHOUSE_OUTBOX_ENTRY_MAX_BYTES")


def drain_interval_secs():
    return value("CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS")


def drain_max_secs():
    return value("CLICKHOUSE_OUTBOX_DRAIN_MAX_SECS")


def lease_secs():
    return value("CLICKHOUSE_OUTBOX_LEASE_SECS")


def max_attempts():
    return value("CLICKHOUSE_OUTBOX_MAX_ATTEMPTS")


def backoff_base_secs():
    return value("CLICKHOUSE_OUTBOX_BACKOFF_BASE_SECS")


def backoff_max_secs():
    return value("CLICKHOUSE_OUTBOX_BACKOFF_MAX_SECS")


def retention_days():
    return value("CLICKHOUSE_OUTBOX_RETENTION_DAYS")


def failed_retention_days():
    """Days rows ClickHouse rejected for good (failed batches) are kept before they are purged."""
    return value("CLICKHOUSE_OUTBOX_FAILED_RETENTION_DAYS")


def dump_chunk_courses():
    return value("CLICKHOUSE_OUTBOX_DUMP_CHUNK_COURSES")


def status_max_age_secs():
    return value("CLICKHOUSE_OUTBOX_STATUS_MAX_AGE_SECS")


def snapshot_at():
    """"publish": a publish takes its snapshot; "drain": it only requests one, the drain takes it."""
    return value("CLICKHOUSE_OUTBOX_SNAPSHOT_AT")


def drain_threads():
    return value("CLICKHOUSE_OUTBOX_DRAIN_THREADS")


def fill_threads():
    return value("CLICKHOUSE_OUTBOX_FILL_THREADS")


def dump_chunk_rows():
    return value("CLICKHOUSE_OUTBOX_DUMP_CHUNK_ROWS")


def producer_setting_name(producer_name):
    """CLICKHOUSE_OUTBOX_<PRODUCER>_ENABLED: a producer's own switch."""
    return f"CLICKHOUSE_OUTBOX_{producer_name.upper()}_ENABLED"


def peer_setting_name(model):
    """EVENT_SINK_CLICKHOUSE_<MODEL>_ENABLED: platform-plugin-aspects' switch for the same data."""
    return f"EVENT_SINK_CLICKHOUSE_{model.upper()}_ENABLED"


def switch_problem(setting, value):
    """
    Why `value` is no valid producer switch `setting` (system check E030), or None: a switch is
    True, False or None, never a value Python or a YAML file would make one of ("false", 1).
    """
    if value is None or isinstance(value, bool):
        return None
    return Problem("clickhouse_outbox.E030", f"{setting} is {value!r}; it must be True, False or None.",
                   "None (or leaving it out) follows platform-plugin-aspects' switch for the same data.")


def producer_switch(producer_name):
    """
    CLICKHOUSE_OUTBOX_<NAME>_ENABLED as set: True, False or None (unset). Any other value (the
    system check's E030: "false", "yes", 1) reads as False, and is logged as an error once per
    process: workers and web servers never run the checks, and a value that is not a boolean
    must never switch a producer on ("false" means off) nor stop the platform's own saves, which
    the receivers run in (`value`'s ImproperlyConfigured would).
    """
    setting = producer_setting_name(producer_name)
    own = getattr(settings, setting, None)
    problem = switch_problem(setting, own)
    if problem is None:
        return own
    if (setting, repr(own)) not in _logged_switches:
        _logged_switches.add((setting, repr(own)))
        log.error("clickhouse_outbox: %s The %s producer is off until it is fixed.", problem, producer_name)
    return False


def producer_enabled(producer):
    """
    Whether `producer` queues rows: never when CLICKHOUSE_OUTBOX_ENABLED is off; else its own
    CLICKHOUSE_OUTBOX_<NAME>_ENABLED when set (True or False; any other value is off, see
    `producer_switch`); else the producer's default; else (None) the peer's switch for the same
    data, so a site that turned a sink of platform-plugin-aspects on gets this producer on:
    EVENT_SINK_CLICKHOUSE_<MODEL>_ENABLED or the waffle flag event_sink_clickhouse.<model>.enabled.
    """
    if not enabled():
        return False
    own = producer_switch(producer.name)
    if own is None:
        own = producer.enabled_by_default
    if own is not None:
        return bool(own)
    return peer_enabled(producer.peer_model)


def peer_enabled(model):
    """The peer's switch for `model`: its setting, or its waffle flag (where waffle is installed)."""
    if not model:
        return False
    if getattr(settings, peer_setting_name(model), False):
        return True
    return waffle_flag_active(f"{PEER_WAFFLE_NAMESPACE}.{model}.enabled")


def waffle_flag_active(name):
    """A waffle flag's state, as edx-toggles reads it; False where waffle is not installed."""
    from django.apps import apps  # noqa: PLC0415 (conf is imported before the app registry is ready)

    if not apps.is_installed("waffle"):
        return False
    try:
        from edx_toggles.toggles import WaffleFlag  # noqa: PLC0415 (part of edx-platform, optional here)
    except ImportError:
        from waffle import flag_is_active  # noqa: PLC0415

        return bool(flag_is_active(None, name))
    return WaffleFlag(name, __name__).is_enabled()


def pii_tables():
    """EVENT_SINK_CLICKHOUSE_PII_MODELS: the tables holding users' personal data, which a retirement empties of them."""
    value = getattr(settings, "EVENT_SINK_CLICKHOUSE_PII_MODELS", None)
    return tuple(DEFAULT_PII_MODELS if value is None else value)


def backfill_chunk_rows():
    return value("CLICKHOUSE_OUTBOX_BACKFILL_CHUNK_ROWS")


def verify_chunk_size():
    """Subjects a verification compares at once (CLICKHOUSE_OUTBOX_VERIFY_CHUNK)."""
    return value("CLICKHOUSE_OUTBOX_VERIFY_CHUNK")


def sweep_interval_secs():
    """Seconds between sweeps of the learner and tag tables; 0 (the default) for none."""
    return value("CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS")


def sweep_chunk():
    return value("CLICKHOUSE_OUTBOX_SWEEP_CHUNK")


def verify_interval_secs():
    """Seconds between periodic verifications of every producer's subjects; 0 (the default) for none."""
    return value("CLICKHOUSE_OUTBOX_VERIFY_INTERVAL_SECS")
