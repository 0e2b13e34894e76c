"""
Attribute and policy values, read like edx-platform's `deserialize_field` + `Field.from_json`:
an XML attribute is JSON if it parses, else the raw string; a policy value is already JSON.

Each `as_*` returns the value, None when it is unset, or raises ValueError or TypeError, and
nothing else (the reader turns those into an error naming the file): numbers that overflow, are
not finite or do not fit the platform's column, dates outside what a datetime holds, values
nested too deeply to load.
"""

import json
import math
from datetime import UTC, datetime, timedelta

from clickhouse_outbox import conf
from clickhouse_outbox.sources.olx.parsing import json_depth

_JSON_STARTS = frozenset('"[{-0123456789tfnNI')

#: The platform's IntegerField (max_student_enrollments_allowed...) is a 32-bit column.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


def loaded(value):
    """
    A policy value as is (its file's nesting is bounded); an XML attribute as JSON if it
    parses, nested at most CLICKHOUSE_OUTBOX_OLX_MAX_DEPTH levels, else the raw string.
    """
    if isinstance(value, str) and value[:1] in _JSON_STARTS:
        try:
            result = json.loads(value)
        except RecursionError:
            raise ValueError(_too_deep()) from None
        except ValueError:
            return value
        if isinstance(result, (list, dict)) and json_depth(result) > conf.olx_max_depth():
            raise ValueError(_too_deep())
        return result
    return value


def _too_deep():
    return f"nested deeper than {conf.olx_max_depth()} levels (CLICKHOUSE_OUTBOX_OLX_MAX_DEPTH)"


def as_str(value):
    result = loaded(value)
    if result is None:
        return None
    return result if isinstance(result, str) else str(value)


def as_bool(value):
    result = loaded(value)
    if result is None:
        return None
    if isinstance(result, str):
        return result.strip().lower() == "true"
    return bool(result)


def as_int(value):
    result = loaded(value)
    if result is None or result == "":
        return None
    if isinstance(result, float):
        result = finite(result)
    number = int(result)
    if not INT_MIN <= number <= INT_MAX:
        raise ValueError(f"out of range ({INT_MIN} to {INT_MAX})")
    return number


def as_list(value):
    result = loaded(value)
    if result is None:
        return None
    if not isinstance(result, list):
        raise TypeError("expected a list")
    return result


def as_date(value):
    result = loaded(value)
    if result is None or result == "":
        return None
    if isinstance(result, bool):
        raise TypeError("expected a date")
    try:
        if isinstance(result, (int, float)):  # edx-platform's Date field: milliseconds since the epoch
            return datetime.fromtimestamp(finite(result) / 1000, tz=UTC)
        if not isinstance(result, str):
            raise TypeError("expected a date")
        parsed = datetime.fromisoformat(result.strip())
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (OverflowError, OSError) as exc:  # past year 9999, or what the platform's time_t holds
        raise ValueError(f"out of range ({exc})") from None


def as_seconds(value):
    """A RelativeTime ("HH:MM:SS" or seconds) in seconds; unset, empty or 0 is None."""
    result = loaded(value)
    if not result:
        return None
    if isinstance(result, bool):
        raise TypeError("expected a time")
    if isinstance(result, (int, float)):
        return finite(float(result))
    if not isinstance(result, str):
        raise TypeError("expected a time")
    hours, minutes, seconds = result.strip().split(":")
    try:
        return timedelta(hours=int(hours), minutes=int(minutes), seconds=finite(float(seconds))).total_seconds()
    except OverflowError as exc:
        raise ValueError(f"out of range ({exc})") from None


def as_fraction(value):
    """A grade cutoff: a finite number (JSON's numbers, or their text)."""
    if isinstance(value, bool) or value is None:
        raise TypeError("expected a number")
    try:
        return finite(float(value))
    except OverflowError as exc:  # an integer too large for a float
        raise ValueError(f"out of range ({exc})") from None


def finite(number):
    if not math.isfinite(number):
        raise ValueError(f"{number} is not a finite number")
    return number
