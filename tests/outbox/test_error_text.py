"""
ClickHouse's error text about rows of personal data, on the old real server and the current
engine (their messages differ): after a schema drift makes ClickHouse reject a learner's
row, the error kept in Batch.last_error, the drain's log lines and its result keep the code,
the column and the row number and say the row text was withheld, never the learner's
values; a retirement clears the error of every batch that carried the user's rows (the
second layer, for text stored before, or by a server whose wording escapes the first).
Rows of other tables keep ClickHouse's whole message.
"""

import logging
from dataclasses import replace

import pytest
from django.contrib.auth import get_user_model

from clickhouse_outbox.clickhouse.errors import ClickHouseError
from clickhouse_outbox.clickhouse.tables import get_table
from clickhouse_outbox.models import Batch, OutboxEntry
from clickhouse_outbox.outbox.drain import drain
from clickhouse_outbox.outbox.send import batch_payload
from clickhouse_outbox.receivers import user_retired
from clickhouse_outbox.serializers.payloads import GZIP
from outbox_project.platform.models import UserProfile
from tests.outbox.helpers import drain_until_settled, drift

pytestmark = pytest.mark.django_db

ADA = {"username": "adaqx", "email": "ada.quixote@vexmoor.example"}
ADA_PROFILE = {"name": "Ada Quixote", "city": "Vexmoor", "bio": "Writes notes on engines", "goals": "Analytical"}
GRACE = {"username": "gracebx", "email": "grace.b@hopper.example"}
GRACE_PROFILE = {"name": "Grace Brewster", "city": "Arlington", "bio": "Finds moths", "goals": "Compilers"}
VALUES = (*ADA.values(), *ADA_PROFILE.values(), *GRACE.values(), *GRACE_PROFILE.values())

#: Drifts of user_profile that make ClickHouse reject each row, quoting it (each message has another shape).
DRIFTS = [("name", "UInt32"), ("name", "Date"), ("name", "DateTime"), ("name", "Enum8('x' = 1)"),
          ("email", "UUID"), ("name", "FixedString(2)")]


def learner(user, profile):
    created = get_user_model().objects.create(**user)
    UserProfile.objects.create(user=created, **profile)
    return created


def leaked(text):
    return [value for value in VALUES if value in text]


@pytest.mark.parametrize(("column", "new_type"), DRIFTS, ids=[f"{column}-{kind}" for column, kind in DRIFTS])
def test_a_rejected_row_of_personal_data_is_kept_out_of_the_error_and_the_logs(clickhouse, caplog, column, new_type):
    learner(ADA, ADA_PROFILE)
    drift(clickhouse, "user_profile", column, new_type)
    caplog.set_level(logging.DEBUG)
    result = drain()
    failed = Batch.objects.get(table="user_profile")  # failed for good, or (Enum8's codes) waiting to retry
    assert failed.status in (Batch.Status.FAILED, Batch.Status.RETRY) and failed.error_code is not None
    assert not leaked(failed.last_error), failed.last_error
    assert not leaked(caplog.text) and not leaked(" ".join(result.errors))
    assert f"Code: {failed.error_code}" in failed.last_error
    assert f"column {column}" in failed.last_error or "column" not in failed.last_error
    assert "withheld: rows of user_profile hold personal data" in failed.last_error
    assert failed.last_error in caplog.text


def test_what_an_operator_needs_is_kept(clickhouse):
    learner(ADA, ADA_PROFILE)
    learner(GRACE, GRACE_PROFILE)
    drift(clickhouse, "user_profile", "name", "UInt32")
    drain_until_settled()  # both rows in one batch: split, then each part fails
    parent = Batch.objects.get(table="user_profile", status=Batch.Status.SPLIT)
    parts = Batch.objects.filter(table="user_profile", status=Batch.Status.FAILED)
    assert sorted(part.split_from_id for part in parts) == [parent.pk, parent.pk]
    for batch in (parent, *parts):
        assert not leaked(batch.last_error), batch.last_error
        assert batch.last_error.startswith("ClickHouse refused the INSERT of") or batch.last_error.startswith("chdb")
        assert "Code: 27 (CANNOT_PARSE_INPUT_ASSERTION_FAILED); Cannot parse input; column name; row " in (
            batch.last_error), batch.last_error
    assert "row 1 of the batch" in parts[0].last_error


def test_rows_of_other_tables_keep_the_whole_message(clickhouse):
    from tests.factories import CourseSnapshotFactory

    CourseSnapshotFactory(course__blocks=1)
    drift(clickhouse, "course_overviews", "display_name", "UInt32")
    drain_until_settled()
    failed = Batch.objects.get(table="course_overviews", status=Batch.Status.FAILED)
    assert "before: " in failed.last_error and "withheld" not in failed.last_error  # the row text, as ClickHouse wrote it


def test_a_retirement_clears_the_error_of_every_batch_that_carried_the_users_rows(clickhouse):
    from clickhouse_outbox.outbox.batch_errors import ERROR_CLEARED

    ada, _ = learner(ADA, ADA_PROFILE), learner(GRACE, GRACE_PROFILE)
    drift(clickhouse, "user_profile", "name", "UInt32")
    drain_until_settled()
    parent = Batch.objects.get(table="user_profile", status=Batch.Status.SPLIT)
    ada_part = Batch.objects.get(entries__snapshot__user_id=ada.pk, status=Batch.Status.FAILED)
    grace_part = Batch.objects.filter(status=Batch.Status.FAILED).exclude(pk=ada_part.pk).get()
    # As a release before this one stored it: ClickHouse's whole message, quoting the rows.
    raw = raw_error(clickhouse, ada_part)
    assert ADA["email"] in raw
    Batch.objects.filter(pk__in=[parent.pk, ada_part.pk, grace_part.pk]).update(last_error=raw)

    user_retired(sender=None, user=ada)

    parent.refresh_from_db()
    ada_part.refresh_from_db()
    grace_part.refresh_from_db()
    assert parent.last_error == ada_part.last_error == ERROR_CLEARED
    assert (ada_part.error_code, ada_part.status) == (27, Batch.Status.FAILED)  # the code stays
    assert grace_part.last_error == raw  # not Ada's batch: Grace's retirement would clear it


def raw_error(backend, batch):
    """ClickHouse's whole message about the batch's rows, as sent to a table not marked as personal data."""
    table = replace(get_table(batch.table), personal_data=False)
    rows = sum(OutboxEntry.objects.filter(batch=batch).values_list("row_count", flat=True))
    with pytest.raises(ClickHouseError) as caught:
        backend.insert(table, batch_payload(batch), rows=rows, encoding=GZIP)
    return str(caught.value)


def test_withholding_keeps_nothing_after_clickhouses_markers():
    """The messages' shapes the drifts above produce, and those of the text formats' row diagnostics."""
    from clickhouse_outbox.clickhouse.errors import withhold_row_text

    messages = [
        'Code: 27, e.displayText() = DB::Exception: Cannot parse input: expected " before: Ada Quixote","email":'
        '"ada@x"}\\n: (while read the value of key user_id): (at row 2)\n, e.what() = DB::Exception',
        "Code: 691. DB::Exception: Unknown element 'Ada Quixote' for enum: (while reading the value of key name): "
        "(at row 1)\n: While executing ParallelParsingBlockInputFormat. (UNKNOWN_ELEMENT_OF_ENUM)",
        "Code: 38. DB::Exception: Cannot parse date here: Ada Quixo: (while reading the value of key name): (at row 1)",
        "Code: 117. DB::Exception: Unknown field found while parsing JSONEachRow format: Ada Quixote: (at row 1)",
        'Code: 27. DB::Exception: Cannot parse input: expected \'\\t\' before: \'Ada Quixote\\tada@x\'\n\nRow 1:\n'
        'Column 0,   name: name, type: UInt32, parsed text: "Ada Quixote"\nERROR: garbage after UInt32: "Quixote"',
    ]
    kept = [withhold_row_text(message, "user_profile") for message in messages]
    assert not [text for text in kept if "Ada" in text or "ada@x" in text], kept
    assert kept[0].startswith("Code: 27 (CANNOT_PARSE_INPUT_ASSERTION_FAILED); Cannot parse input; column user_id; "
                              "row 2 of the batch.")
    assert kept[1].startswith("Code: 691 (UNKNOWN_ELEMENT_OF_ENUM); Unknown element; column name; row 1")
    assert "column name (UInt32); row 1 of the batch" in kept[4]
    assert withhold_row_text("Ada Quixote <ada@x>", "user_profile") == (
        "[ClickHouse's message is withheld: rows of user_profile hold personal data, and ClickHouse's message "
        "quotes the rows it rejects.]")
