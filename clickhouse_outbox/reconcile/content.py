"""
Comparing content, not only presence, for producers whose subject is one row of a platform
table (learners, tags): what ClickHouse holds for each subject's key, its latest version
(by time_last_dumped, what the dashboards read), against the row our serializer makes of the
source now. A profile changed by `QuerySet.update()` has all its rows in ClickHouse, under
its snapshot's dump_id: only its content tells.

One source query and as few ClickHouse queries as the statement and answer sizes allow
(ADR 0013) per chunk of subjects. The latest version is picked here, not by argMax or FINAL:
the same on the old 18.16 server and on current engines (chdb), and every table's versions
of a key are few. Only column names are kept of a difference, never values (personal data).
"""

import json

from clickhouse_outbox.clickhouse.backends.base import MAX_STATEMENT_BYTES, qualified_name, quote_identifier, sql_literal
from clickhouse_outbox.reconcile.held import TableMissing, query

#: Bytes of rows one query may answer (the HTTP backend refuses answers over 64 MiB).
ANSWER_BYTES = 8 * 1024 * 1024
#: Versions of a key a query's answer is sized for (a resend, a repair, the peer's row).
VERSIONS = 4
#: The columns every snapshot sets itself: not content.
OWN_COLUMNS = frozenset({"dump_id", "time_last_dumped"})


def key_column(producer):
    """The column that identifies a subject's row in its table: the subject's (id), else the table's first sort key."""
    table = producer.table
    return producer.subject_column(table) or table.order_by[0]


def expected_rows(producer, subjects):
    """{subject: the row (a dict) our serializer makes of the source now}; subjects the source lost are left out."""
    found = producer.queryset().filter(pk__in=[int(subject) for subject in subjects])
    rows = {}
    for obj in found:
        try:
            line = producer.serialize(obj, dump_id="", time_last_dumped="")
        except Exception:  # noqa: BLE001,S112 (a row that cannot be serialized is the dump's failure to report)
            continue
        rows[str(obj.pk)] = (json.loads(line), len(line))
    return rows


def latest_held(backend, table, column, keys, sizes, max_bytes=MAX_STATEMENT_BYTES, answer_bytes=ANSWER_BYTES):
    """{key (text): the latest row ClickHouse holds for it}, read in parts sized by statement and answer bytes."""
    start = f"SELECT * FROM {qualified_name(backend.database, table.name)} WHERE {quote_identifier(column)} IN ("
    room = max_bytes - len(start.encode()) - 1
    latest = {}
    for part in parts(keys, sizes, room, answer_bytes):
        for row in query(backend, table, f"{start}{', '.join(sql_literal(key) for key in part)})"):
            key = str(row[column])
            if key not in latest or str(row["time_last_dumped"]) >= str(latest[key]["time_last_dumped"]):
                latest[key] = row
    return latest


def parts(keys, sizes, room, answer_bytes):
    """`keys` in consecutive lists whose literals fit `room` bytes and whose expected answer fits `answer_bytes`."""
    part, used, answer = [], 0, 0
    for key, size in zip(keys, sizes, strict=True):
        cost = len(sql_literal(key).encode()) + 2
        if part and (used + cost > room or answer + size * VERSIONS > answer_bytes):
            yield part
            part, used, answer = [], 0, 0
        part.append(key)
        used += cost
        answer += size * VERSIONS
    if part:
        yield part


def normal(value):
    """A value as text, the same from our JSON line and from ClickHouse's (Bool or 18.16's UInt8, Int32, UUID)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return "" if value is None else str(value)


def differing_columns(expected, held):
    """The columns (but dump_id and time_last_dumped) whose values differ, sorted."""
    return sorted(column for column, value in expected.items()
                  if column not in OWN_COLUMNS and normal(value) != normal(held.get(column)))


def content_differences(producer, backend, subjects):
    """
    {subject: [columns that differ]} for the subjects whose latest row in ClickHouse is not
    what the source holds now; subjects ClickHouse holds no row of (presence says so) or the
    source lost (deleted rows) are not compared.
    """
    if not subjects:
        return {}
    expected = expected_rows(producer, subjects)
    column = key_column(producer)
    numeric = column == "id"
    by_key = {}
    for subject, (row, _) in expected.items():
        by_key[int(row[column]) if numeric else str(row[column])] = subject
    keys = list(by_key)
    try:
        held = latest_held(backend, producer.table, column, keys, [expected[by_key[key]][1] for key in keys])
    except TableMissing:
        return {}
    differences = {}
    for key, subject in by_key.items():
        row = held.get(str(key))
        if row is None:
            continue
        columns = differing_columns(expected[subject][0], row)
        if columns:
            differences[subject] = columns
    return differences
