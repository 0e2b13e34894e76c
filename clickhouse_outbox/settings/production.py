"""
Production settings: values from the deployment's YAML (ENV_TOKENS / Tutor's settings).
"""

from clickhouse_outbox import conf
from clickhouse_outbox.schedule import beat_entry, install_beat_entry, install_verify_entry


def plugin_settings(settings):
    env_tokens = getattr(settings, "ENV_TOKENS", {}) or {}
    interval = getattr(settings, "CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS", conf.DEFAULTS["CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS"])
    installed = beat_entry(interval)
    for name in ("EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG", "EVENT_SINK_CLICKHOUSE_PII_MODELS",
                 "EVENT_SINK_CLICKHOUSE_MODEL_CONFIG", *conf.DEFAULTS):
        if name in env_tokens:
            setattr(settings, name, env_tokens[name])
    for name, value in env_tokens.items():  # the producers' switches: CLICKHOUSE_OUTBOX_<PRODUCER>_ENABLED
        if name.startswith("CLICKHOUSE_OUTBOX_") and name.endswith("_ENABLED"):
            setattr(settings, name, value)
    install_beat_entry(settings, replacing=installed)  # the interval may have come from ENV_TOKENS
    install_verify_entry(settings)
