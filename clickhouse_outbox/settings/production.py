"""
Production settings: values from the deployment's YAML (ENV_TOKENS / Tutor's settings).
"""

from clickhouse_outbox import conf


def plugin_settings(settings):
    env_tokens = getattr(settings, "ENV_TOKENS", {}) or {}
    for name in ("EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG", *conf.DEFAULTS):
        if name in env_tokens:
            setattr(settings, name, env_tokens[name])
