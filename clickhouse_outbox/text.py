"""
Words for operators: counts with the right noun, durations, the line of an error that says it,
and text made safe to show on a terminal (`printable`): a course author writes display names,
a learner's browser or ClickHouse's error text may carry anything.
"""

import logging
import unicodedata

#: What a terminal acts on or does not show: controls (C0, DEL, C1: escape sequences, BEL, carriage
#: returns), format characters (bidirectional overrides and isolates, zero-width spaces and joiners,
#: the BOM, soft hyphens...), line and paragraph separators, and lone surrogates.
HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
#: Emoji modifiers and variation selectors, between an emoji and the joiner that follows it.
_MODIFIERS = frozenset({"Mn", "Me", "Sk"})
ZWJ = "\u200d"


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
    """'SUBJECT: MESSAGE', unless the message already starts by naming the subject; each `printable`."""
    subject, message = printable(subject), printable(message, keep_lines=True)
    return message if message.startswith(subject) else f"{subject}: {message}"


def printable(text, *, keep_lines=False):
    r"""
    `text` as a terminal should show it: every character of the `HIDDEN` categories written
    as visible text (ESC as \x1b, a right-to-left override as \u202e), so a display name
    cannot move the cursor, change colours, ring the bell, reverse what follows it or hide
    part of itself. Letters, accents, CJK, emoji (a family joined with zero-width joiners
    too) stay as they are. `keep_lines` keeps newlines and tabs: for a command's own
    lines; a value (a name, a subject) has its newlines escaped, so it cannot forge a line.
    A backslash is not escaped: this is for the eye, not a reversible encoding.
    """
    text = str(text)
    if keep_lines:
        return "\n".join(line if line.isprintable() else _escaped(line, keep="\t") for line in text.split("\n"))
    return text if text.isprintable() else _escaped(text)


def _escaped(text, keep=""):
    return "".join(
        char if char in keep or unicodedata.category(char) not in HIDDEN or _joins_emoji(text, index)
        else _escape(char)
        for index, char in enumerate(text)
    )


#: The controls written as Python writes them; the others by their code.
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char):
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _joins_emoji(text, index):
    """A zero-width joiner between two emoji (👩‍💻, a family): part of the picture, not hidden text."""
    if text[index] != ZWJ or index + 1 >= len(text):
        return False
    before = index - 1
    while before > 0 and unicodedata.category(text[before]) in _MODIFIERS:
        before -= 1
    return before >= 0 and unicodedata.category(text[before]) == "So" and unicodedata.category(text[index + 1]) == "So"


class PrintableFormatter(logging.Formatter):
    """A log formatter whose lines (tracebacks included) go through `printable`: for a console or a log file."""

    def format(self, record):
        return printable(super().format(record), keep_lines=True)
