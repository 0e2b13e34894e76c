"""
Encoding rows as JSONEachRow lines, fast and exactly.

JSON escapes every control character (NUL included) and ClickHouse decodes JSON strings
byte for byte, so any display name round-trips. Lines are built from pre-encoded pieces
because one publish of a 1,000-block course encodes about 2,000 rows inside the publish.
"""

import json
import re
from datetime import datetime, timezone

from django.utils.dateparse import parse_datetime

# The C-accelerated string encoder behind json.dumps(..., ensure_ascii=False).
encode_string = json.encoder.encode_basestring  # pylint: disable=no-member
# ... and behind json.dumps() with its defaults (ensure_ascii=True), for the *_json columns.
encode_ascii = json.encoder.encode_basestring_ascii  # pylint: disable=no-member


#: json.dumps(..., ensure_ascii=False, separators=(",", ":")), made once: json.dumps builds an encoder per call
#: for any non-default option, a third of a short row's encoding.
ROW_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def encode_row(columns, values):
    """One JSONEachRow line (bytes, with its newline) for a row given as column → value."""
    return (ROW_ENCODER.encode(dict(zip(columns, values))) + "\n").encode()


def drf_datetime(value):
    """A datetime as Django REST framework renders it (the peers' `created`, `modified`...)."""
    if value is None:
        return ""
    if value.tzinfo is not timezone.utc:  # what Django reads is UTC already: no conversion per row
        value = as_utc(value)
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


#: A UTC datetime as a database gives it cast to text: SQLite's stored text (`str()` of the value), MySQL's (six
#: digits of microseconds, zeros too), PostgreSQL's (as many digits as it needs, none for zero; "+00").
STORED_DATETIME = re.compile(r"(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?(?:\+00(?::00)?)?")


def drf_stored_datetime(value):
    """
    `drf_datetime` of a datetime column read as text (`values_datetimes`, where the database
    keeps UTC), made the same string without a datetime in between: in a dump of enrollments,
    parsing, making aware and `isoformat` were a fifth of the work. Text in any other form is
    parsed as Django would; a datetime or None goes to `drf_datetime`.
    """
    if value.__class__ is str:
        found = STORED_DATETIME.fullmatch(value)
        if found is not None:
            day, seconds, fraction = found.groups()
            if fraction is None or not fraction.strip("0"):
                return f"{day}T{seconds}Z"  # `isoformat` leaves out zero microseconds
            return f"{day}T{seconds}.{fraction:0<6}Z"
        parsed = parse_datetime(value)
        if parsed is None:
            raise ValueError(f"a datetime column holds {value!r}, which is not a datetime")
        value = parsed
    return drf_datetime(value)


def str_datetime(value):
    """A datetime as `str()` renders it (the peers' `course_start`, `course_end`)."""
    return "" if value is None else str(as_utc(value))


def dump_time(value):
    """`time_last_dumped`: always with microseconds, the format the peers parse back."""
    return as_utc(value).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")


def as_utc(value):
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


class JSONEncoder(json.JSONEncoder):
    """JSON for the *_data_json columns: datetimes as UTC ISO strings, like the peers."""

    def default(self, o):
        if isinstance(o, datetime):
            return as_utc(o).isoformat()
        return super().default(o)


def chunk_lines(lines, max_bytes):
    """
    Group encoded lines into chunks of at most `max_bytes` (a single longer line is its
    own chunk), yielding (row_count, bytes). Chunks keep one outbox row under the
    database's statement limits (MariaDB's max_allowed_packet).
    """
    if sum(map(len, lines)) <= max_bytes:  # the usual case: a whole table's lines in one chunk
        if lines:
            yield len(lines), b"".join(lines)
        return
    chunk, size = [], 0
    for line in lines:
        if chunk and size + len(line) > max_bytes:
            yield len(chunk), b"".join(chunk)
            chunk, size = [], 0
        chunk.append(line)
        size += len(line)
    if chunk:
        yield len(chunk), b"".join(chunk)
