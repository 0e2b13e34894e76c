"""
Words for operators: counts with the right noun, durations, the line of an error that says it.
"""


def plural(count, singular, plural_form=None):
    """'1 course', '2 courses', '1,200 rows'."""
    word = singular if count == 1 else (plural_form or singular + "s")
    return f"{count:,} {word}"


def format_age(seconds):
    """A duration in the largest fitting unit: '45 s', '12 min', '3.5 h', '2.1 days'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def last_line(text):
    """The last non-empty line of a traceback or message: where Python puts what went wrong."""
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def about(subject, message):
    """'SUBJECT: MESSAGE', unless the message already starts by naming the subject."""
    subject, message = str(subject), str(message)
    return message if message.startswith(subject) else f"{subject}: {message}"
