"""
Production settings: values from the deployment's YAML (ENV_TOKENS / Tutor's settings).
"""

from clickhouse_outbox import conf
from clickhouse_outbox.schedule import install_entries, planned_entries


def plugin_settings(settings):
    env_tokens = getattr(settings, "ENV_TOKENS", {}) or {}
    installed = planned_entries(settings)  # the beat entries the common settings installed
    for name in ("EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG", "EVENT_SINK_CLICKHOUSE_PII_MODELS",
                 "EVENT_SINK_CLICKHOUSE_MODEL_CONFIG", *conf.DEFAULTS):
        if name in env_tokens:
            setattr(settings, name, env_tokens[name])
    for name, value in env_tokens.items():  # the producers' switches: CLICKHOUSE_OUTBOX_<PRODUCER>_ENABLED
        if name.startswith("CLICKHOUSE_OUTBOX_") and name.endswith("_ENABLED"):
            setattr(settings, name, value)
    # Their intervals may have come from ENV_TOKENS: the drain, the verification and the sweep,
    # the same entries as the common settings install.
    install_entries(settings, replacing=installed)
