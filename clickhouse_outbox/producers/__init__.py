"""
Producers read something from the platform and queue it as rows for ClickHouse tables, one
module each: course structure, enrollments, user profiles, external ids, content tags. Each
registers itself with `outbox.producers` when imported (`AppConfig.ready` imports them all).
"""

MODULES = (
    "clickhouse_outbox.producers.course_structure",
    "clickhouse_outbox.producers.course_enrollment",
    "clickhouse_outbox.producers.user_profile",
    "clickhouse_outbox.producers.external_id",
    "clickhouse_outbox.producers.tags",
)
