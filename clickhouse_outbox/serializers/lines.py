"""
JSONEachRow lines from a template compiled once per chunk: a whole-table dump encodes
hundreds of thousands of rows that share their columns, dump_id and time_last_dumped, so
the keys and those constants are escaped once and each row only fills in its own values.
Byte for byte what `encoding.encode_row` (json.dumps of a dict) gives.
"""

import json

from clickhouse_outbox.serializers.encoding import encode_string


def json_value(value):
    """`value` as json.dumps(..., ensure_ascii=False) writes it inside a dict (the usual types without a call)."""
    kind = type(value)
    if kind is str:
        return encode_string(value)
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def line_template(columns, constants):
    """
    A %-template of one line: `columns` in order, those in `constants` (column → value)
    written in, each other one a %s for `fill`.
    """
    parts = []
    for column in columns:
        value = json_value(constants[column]).replace("%", "%%") if column in constants else "%s"
        parts.append(f"{json_value(column).replace('%', '%%')}:{value}")
    return "{" + ",".join(parts) + "}\n"


def fill(template, values):
    """One line (bytes, with its newline) of `template` with `values` already JSON-encoded."""
    return (template % values).encode()
