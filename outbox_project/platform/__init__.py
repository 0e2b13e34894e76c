"""
Stand-ins for the edx-platform models the producers read (edx-platform is not installable):
the same fields, the same table names, so the standalone project, the demo and the tests
run the producers on a real database. EVENT_SINK_CLICKHOUSE_MODEL_CONFIG points at them.
"""
