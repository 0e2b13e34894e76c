"""The Django system checks of the settings (clickhouse_outbox/checks.py)."""
