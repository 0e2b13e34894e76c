"""The outbox database's clock and lock conflicts (clickhouse_outbox/db.py)."""
