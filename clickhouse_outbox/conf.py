"""
The plugin's settings, read at call time so `override_settings` and live changes work.

Defaults live here (and in `settings/common.py` for the platform); `checks.py` validates them.
"""

from django.conf import settings

DEFAULT_BACKEND_CONFIG = {
    "url": "http://clickhouse:8123",
    "username": "ch_cms",
    "password": "",
    "database": "event_sink",
    "timeout_secs": 5,
    "connect_timeout_secs": 3,
}

DEFAULTS = {
    "CLICKHOUSE_OUTBOX_ENABLED": True,
    "CLICKHOUSE_OUTBOX_COURSE_SOURCE": "clickhouse_outbox.sources.modulestore.ModulestoreSource",
    "CLICKHOUSE_OUTBOX_OLX_DIR": "",
    "CLICKHOUSE_OUTBOX_BATCH_ROWS": 50_000,
    "CLICKHOUSE_OUTBOX_ENTRY_MAX_BYTES": 1_048_576,
    "CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS": 10,
    "CLICKHOUSE_OUTBOX_DRAIN_MAX_SECS": 50,
    "CLICKHOUSE_OUTBOX_LEASE_SECS": 300,
    "CLICKHOUSE_OUTBOX_MAX_ATTEMPTS": 12,
    "CLICKHOUSE_OUTBOX_BACKOFF_BASE_SECS": 5,
    "CLICKHOUSE_OUTBOX_BACKOFF_MAX_SECS": 3600,
    "CLICKHOUSE_OUTBOX_RETENTION_DAYS": 7,
    "CLICKHOUSE_OUTBOX_DUMP_CHUNK_COURSES": 20,
    "CLICKHOUSE_OUTBOX_DUMP_CHUNK_ROWS": 1000,
    "CLICKHOUSE_OUTBOX_VERIFY_CHUNK": 1000,
    "CLICKHOUSE_OUTBOX_VERIFY_INTERVAL_SECS": 0,
    "CLICKHOUSE_OUTBOX_STATUS_MAX_AGE_SECS": 900,
    "CLICKHOUSE_OUTBOX_SNAPSHOT_AT": "publish",
    "CLICKHOUSE_OUTBOX_DRAIN_THREADS": 1,
    "CLICKHOUSE_OUTBOX_CLAIM_LOCKS": True,
}

SNAPSHOT_AT_CHOICES = ("publish", "drain")

#: platform-plugin-aspects' default EVENT_SINK_CLICKHOUSE_PII_MODELS: the tables a retirement deletes from.
DEFAULT_PII_MODELS = ("user_profile", "external_id")
#: The namespace of the peer's per-model waffle flags (event_sink_clickhouse.<model>.enabled).
PEER_WAFFLE_NAMESPACE = "event_sink_clickhouse"


def get(name):
    return getattr(settings, name, DEFAULTS[name])


def backend_config():
    """
    EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG, the seed plugin's setting, with defaults filled in
    (not the default `url` when the setting lists replicas in `urls`).
    """
    configured = getattr(settings, "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG", None) or {}
    config = dict(DEFAULT_BACKEND_CONFIG)
    if configured.get("urls") is not None:
        del config["url"]  # the default url would disagree with the replicas the deployment lists
    config.update(configured)
    return config


def enabled():
    return bool(get("CLICKHOUSE_OUTBOX_ENABLED"))


def course_source_path():
    return get("CLICKHOUSE_OUTBOX_COURSE_SOURCE")


def olx_dir():
    return get("CLICKHOUSE_OUTBOX_OLX_DIR")


def batch_rows():
    return int(get("CLICKHOUSE_OUTBOX_BATCH_ROWS"))


def entry_max_bytes():
    return int(get("CLICKHOUSE_OUTBOX_ENTRY_MAX_BYTES"))


def drain_interval_secs():
    return float(get("CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS"))


def drain_max_secs():
    return float(get("CLICKHOUSE_OUTBOX_DRAIN_MAX_SECS"))


def claim_locks():
    return get("CLICKHOUSE_OUTBOX_CLAIM_LOCKS")


def lease_secs():
    return int(get("CLICKHOUSE_OUTBOX_LEASE_SECS"))


def max_attempts():
    return int(get("CLICKHOUSE_OUTBOX_MAX_ATTEMPTS"))


def backoff_base_secs():
    return float(get("CLICKHOUSE_OUTBOX_BACKOFF_BASE_SECS"))


def backoff_max_secs():
    return float(get("CLICKHOUSE_OUTBOX_BACKOFF_MAX_SECS"))


def retention_days():
    return float(get("CLICKHOUSE_OUTBOX_RETENTION_DAYS"))


def dump_chunk_courses():
    return int(get("CLICKHOUSE_OUTBOX_DUMP_CHUNK_COURSES"))


def status_max_age_secs():
    return float(get("CLICKHOUSE_OUTBOX_STATUS_MAX_AGE_SECS"))


def snapshot_at():
    """"publish": a publish takes its snapshot; "drain": it only requests one, the drain takes it."""
    return get("CLICKHOUSE_OUTBOX_SNAPSHOT_AT")


def drain_threads():
    return int(get("CLICKHOUSE_OUTBOX_DRAIN_THREADS"))


def dump_chunk_rows():
    return int(get("CLICKHOUSE_OUTBOX_DUMP_CHUNK_ROWS"))


def producer_setting_name(producer_name):
    """CLICKHOUSE_OUTBOX_<PRODUCER>_ENABLED: a producer's own switch."""
    return f"CLICKHOUSE_OUTBOX_{producer_name.upper()}_ENABLED"


def peer_setting_name(model):
    """EVENT_SINK_CLICKHOUSE_<MODEL>_ENABLED: platform-plugin-aspects' switch for the same data."""
    return f"EVENT_SINK_CLICKHOUSE_{model.upper()}_ENABLED"


def producer_enabled(producer):
    """
    Whether `producer` queues rows: never when CLICKHOUSE_OUTBOX_ENABLED is off; else its own
    CLICKHOUSE_OUTBOX_<NAME>_ENABLED when set (True or False); else the producer's default;
    else (None) the peer's switch for the same data, so a site that turned a sink of
    platform-plugin-aspects on gets this producer on: EVENT_SINK_CLICKHOUSE_<MODEL>_ENABLED or
    the waffle flag event_sink_clickhouse.<model>.enabled.
    """
    if not enabled():
        return False
    own = getattr(settings, producer_setting_name(producer.name), None)
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


def verify_chunk():
    return int(get("CLICKHOUSE_OUTBOX_VERIFY_CHUNK"))


def verify_interval_secs():
    """Seconds between periodic verifications of every producer's subjects; 0 (the default) for none."""
    return float(get("CLICKHOUSE_OUTBOX_VERIFY_INTERVAL_SECS") or 0)
