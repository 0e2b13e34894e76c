"""What the OLX course source raises: one error type, whose message names the file at fault."""

from clickhouse_outbox.sources.base import CourseSourceError


class OlxError(CourseSourceError):
    """The export is broken or hostile; the one-line message names the offending file or member."""
