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
    "CLICKHOUSE_OUTBOX_STATUS_MAX_AGE_SECS": 900,
    "CLICKHOUSE_OUTBOX_SNAPSHOT_AT": "publish",
    "CLICKHOUSE_OUTBOX_DRAIN_THREADS": 1,
}

SNAPSHOT_AT_CHOICES = ("publish", "drain")


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
