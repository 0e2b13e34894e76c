"""
Settings for edx-platform's own test runs: never reach a ClickHouse from the platform's tests.
"""


def plugin_settings(settings):
    settings.CLICKHOUSE_OUTBOX_ENABLED = False
