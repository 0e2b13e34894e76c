"""The Tutor plugin: deploy clickhouse_outbox next to (or without) Aspects."""
