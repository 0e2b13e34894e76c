"""
Producers read something from the platform and queue it as rows for ClickHouse tables.
Course structure is the first; user profiles, enrollments and tags can follow the same path.
"""
