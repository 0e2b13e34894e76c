"""
Errors from ClickHouse, classified so the drain knows whether to retry.

A *permanent* error means ClickHouse rejected the data itself (a value it cannot parse):
sending the same bytes again will fail again, so the drain isolates the offending rows.
Everything else (network, timeouts, server pressure, authentication, a missing table) is
*retryable*: the rows wait in the outbox until the cause is fixed. Nothing is dropped.
"""

import re

# ClickHouse error codes (and names) that mean "this data is invalid for this table". Not 16
# (NO_SUCH_COLUMN_IN_TABLE): with an explicit column list it means the table lacks a column,
# which every row would hit; that is a schema to fix, and the rows wait for it. Nor 62
# (SYNTAX_ERROR) or 73 (UNKNOWN_FORMAT): they are about the query, not a row.
# (src/Common/ErrorCodes.cpp; stable across server versions.)
DATA_ERRORS = {
    6: "CANNOT_PARSE_TEXT",
    17: "SIZES_OF_COLUMNS_IN_TUPLE_DOESNT_MATCH",
    19: "SIZE_OF_FIXED_STRING_DOESNT_MATCH",
    25: "CANNOT_PARSE_ESCAPE_SEQUENCE",
    26: "CANNOT_PARSE_QUOTED_STRING",
    27: "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
    32: "ATTEMPT_TO_READ_AFTER_EOF",
    33: "CANNOT_READ_ALL_DATA",
    38: "CANNOT_PARSE_DATE",
    41: "CANNOT_PARSE_DATETIME",
    53: "TYPE_MISMATCH",
    69: "ARGUMENT_OUT_OF_BOUND",
    70: "CANNOT_CONVERT_TYPE",
    72: "CANNOT_PARSE_NUMBER",
    117: "INCORRECT_DATA",
    131: "TOO_LARGE_STRING_SIZE",
    321: "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
    376: "CANNOT_PARSE_UUID",
    467: "CANNOT_PARSE_BOOL",
}
DATA_ERROR_CODES = frozenset(DATA_ERRORS)

# Codes that say the server is under pressure: always worth retrying later.
PRESSURE_CODES = frozenset({
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    203,  # NO_FREE_CONNECTION
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    241,  # MEMORY_LIMIT_EXCEEDED
    252,  # TOO_MANY_PARTS
    159,  # TIMEOUT_EXCEEDED
    242,  # TABLE_IS_READ_ONLY
    319,  # UNKNOWN_STATUS_OF_INSERT
})

_CODE_IN_TEXT = re.compile(r"Code:\s*(\d+)")


def code_from_text(text):
    """The error code in an old server's `Code: N, e.displayText() = ...` message."""
    match = _CODE_IN_TEXT.search(text or "")
    return int(match.group(1)) if match else None


# What of ClickHouse's message about a rejected row is kept when the row holds personal data:
# its own words, never the data. The row's text follows a colon or comes in quotes ("expected
# '"' before: '<the rest of the row>'", "Cannot parse date here: <value>", "Unknown element
# '<value>'", "format: <a field name>"), so the description is kept up to the first of those;
# then the column ("value of key <column>", or "name: <column>, type: <type>" in the row
# diagnostics of the text formats), the row number, and the error's name.
_DESCRIPTION = re.compile(r"DB::Exception:\s*(?!Code:)([^\s:'\"`{\[<\\][^:'\"`{\[<\n\\]*)")  # chdb repeats "Code: N. DB::Exception:"
_KEY = re.compile(r"value of key `?([A-Za-z_][A-Za-z0-9_]*)")
_COLUMN = re.compile(r"name:\s*`?([A-Za-z_][A-Za-z0-9_]*)`?,\s*type:\s*([A-Za-z][A-Za-z0-9_]*)")
_ROW = re.compile(r"(?:\bat row|\bRow)\s+(\d+)")
_NAME = re.compile(r"\(([A-Z][A-Z0-9_]{2,})\)\s*$")


def withhold_row_text(text, table):
    """
    ClickHouse's message about rows of `table` (a table of personal data) without the text of
    the rows it quotes: what an operator needs (code, error name, description, column, row
    number) and a sentence saying what was withheld and why. Everything else of the message
    is dropped, whatever its shape, so no server version's wording can let the data through.
    """
    text = text or ""
    code = code_from_text(text)
    description = _DESCRIPTION.search(text)
    name = _NAME.search(text)
    parts = []
    if code is not None:
        name = name.group(1) if name else DATA_ERRORS.get(code)  # old servers do not say it
        parts.append(f"Code: {code}" + (f" ({name})" if name else ""))
    if description and description.group(1).strip(" ,."):
        parts.append(description.group(1).strip(" ,."))
    columns = list(dict.fromkeys(match.group(1) for match in _KEY.finditer(text)))
    columns += [f"{match.group(1)} ({match.group(2)})" for match in _COLUMN.finditer(text)
                if match.group(1) not in columns]
    if columns:
        parts.append(f"column {', '.join(columns)}")
    rows = list(dict.fromkeys(match.group(1) for match in _ROW.finditer(text)))
    if rows:
        parts.append(f"row {', '.join(rows)} of the batch")
    why = f"rows of {table} hold personal data, and ClickHouse's message quotes the rows it rejects"
    if not parts:
        return f"[ClickHouse's message is withheld: {why}.]"
    return f"{'; '.join(parts)}. [The rest of ClickHouse's message, the row text, is withheld: {why}.]"


class ClickHouseError(Exception):
    """
    ClickHouse could not take a request.

    `retryable` is False only when the data was rejected: see the module docstring.
    The message never contains credentials.
    """

    def __init__(self, message, *, code=None, http_status=None, retryable=True):
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        self.retryable = retryable

    def __str__(self):
        parts = [self.message]
        if self.code is not None:
            parts.append(f"[ClickHouse code {self.code}]")
        if self.http_status is not None:
            parts.append(f"[HTTP {self.http_status}]")
        return " ".join(parts)


class ClickHouseUnavailable(ClickHouseError):
    """The server could not be reached, timed out, or is locked by another process."""


class ClickHouseRejected(ClickHouseError):
    """The server answered with an error."""


class WriteMismatch(ClickHouseError):
    """The server reports writing a different number of rows than were sent."""


class OutOfTime(ClickHouseError):
    """
    A request was not started because the run it belongs to (a drain) had used its time:
    nothing was sent, so nothing can have been applied. Not a failure of ClickHouse.
    """


# The server did not accept who we are (or what we may do): a configuration to fix.
CREDENTIAL_CODES = frozenset({192, 193, 194, 497, 516})

# Too few replicas are up for the configured insert_quorum: every insert fails until one is back.
QUORUM_CODES = frozenset({
    285,  # TOO_FEW_LIVE_REPLICAS
    286,  # UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE
})


def is_server_wide(exc):
    """
    True when a failure says nothing about the batch: ClickHouse is unreachable, timing out,
    overloaded, refusing our credentials, or short of replicas for insert_quorum. Any other
    batch would fail the same way now.
    """
    return (
        isinstance(exc, ClickHouseUnavailable)
        or getattr(exc, "http_status", None) in (401, 403)
        or getattr(exc, "code", None) in CREDENTIAL_CODES | PRESSURE_CODES | QUORUM_CODES
    )


def classify(code):
    """True when an error with this ClickHouse code is worth retrying."""
    return code not in DATA_ERROR_CODES


# Codes that say the destination is missing or differs from the contract.
SCHEMA_CODES = frozenset({
    16,   # NO_SUCH_COLUMN_IN_TABLE
    60,   # UNKNOWN_TABLE
    81,   # UNKNOWN_DATABASE
})


def describe_failure(*, code=None, http_status=None, server_error=False):
    """
    What a recorded failure means, in one sentence an operator can act on (the recorded
    message follows it wherever it is shown).
    """
    if http_status in (401, 403) or code in CREDENTIAL_CODES:
        return "ClickHouse refused the user name, the password or the user's rights."
    if code in SCHEMA_CODES:
        return "A table or database is missing, or differs from the contract: see clickhouse_outbox_schema --check."
    if code in PRESSURE_CODES:
        return "ClickHouse was overloaded or timed out."
    if code in QUORUM_CODES:
        return "Too few ClickHouse replicas were up for insert_quorum."
    if code in DATA_ERROR_CODES:
        return "ClickHouse rejected a row as invalid; the other rows were sent."
    if server_error:
        return "ClickHouse could not be reached, or did not answer in time."
    if code is not None:
        return f"ClickHouse answered with error code {code}."
    return "The batch could not be sent."
