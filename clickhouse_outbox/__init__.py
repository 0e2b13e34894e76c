"""
Reliable course-structure analytics for Open edX: a transactional outbox drained to ClickHouse.
"""

__version__ = "0.1.0"
