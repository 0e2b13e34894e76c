"""
Argument types the outbox's commands share: each rejects a bad value with a message that
says what is expected, before the command does anything.
"""

import argparse
from datetime import datetime, timezone


def positive_int(text):
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is too small: give 1 or more")
    return value


def positive_seconds(text):
    """A number of seconds greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds greater than 0")
    return value


def aware_datetime(text):
    """An ISO 8601 date or date and time ('2026-11-01', '2026-11-01T08:30'); UTC unless it says otherwise."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date or time: write e.g. 2026-11-01 or 2026-11-01T08:30 (UTC)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


def producer_name(text):
    """A registered producer's name; the error lists the producers there are."""
    from clickhouse_outbox.outbox import registry  # noqa: PLC0415 (argument types load before the app is ready)

    try:
        return registry.get(text.strip()).name
    except registry.UnknownProducer as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
