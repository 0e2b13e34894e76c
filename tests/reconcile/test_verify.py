"""
Issue 14 as an operator meets it, on the real 18.16 server and on chdb: courses delivered,
then (a) a course's rows deleted in ClickHouse, (b) one block row dropped, (c) a batch
stored twice, (d) a newer version published behind the outbox's back; each is found by
`outbox_verify` with its verdict and numbers, `--repair` dumps it again, the drain sends
it, and a second verification says all is well. (e), a replica that lost its table, is in
test_cluster.py.
"""

import io

import pytest
from django.core.management import call_command

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.clickhouse.tables import COURSE_BLOCKS, COURSE_OVERVIEWS, COURSE_RELATIONSHIPS
from clickhouse_outbox.models import DumpJob, Snapshot, Verdict
from clickhouse_outbox.outbox.drain import drain_until_empty
from clickhouse_outbox.receivers import course_published
from tests.reconcile.helpers import (
    delete_rows,
    differ,
    insert_again,
    latest,
    publish_behind_the_outbox,
    publish_courses,
    verify,
)

pytestmark = pytest.mark.django_db

COURSES = ("--producer", "course_structure")
COURSE_TABLES = (COURSE_OVERVIEWS.name, COURSE_BLOCKS.name, COURSE_RELATIONSHIPS.name)


@pytest.fixture
def courses(olx_source, clickhouse, tmp_path):
    """Three courses published and delivered; a first verification finds them all ok."""
    keys = publish_courses(olx_source, tmp_path / "exports", 3)
    code, report = verify(*COURSES)
    assert (code, report["counts"]["ok"], report["differ"]) == (0, 3, [])
    return keys


def expected(course_key):
    return latest(course_key).table_rows


def repair_and_verify_again(keys):
    """`--repair`, the drain, a second verification: all ok (its report)."""
    code, report = verify(*COURSES, "--repair")
    assert report["repair_job"], report
    repair = DumpJob.objects.get(pk=report["repair_job"])
    assert (repair.status, repair.origin) == (DumpJob.Status.DONE, f"repair of job {report['job']}")
    result, left = drain_until_empty(timeout=60)
    assert result.ok and not left["pending_entries"], (result, left)
    code, again = verify(*COURSES)
    assert (code, again["counts"]["ok"], again["differ"]) == (0, len(keys), []), again
    return report


def held(backend, table, course_key):
    """{dump_id: rows} `table` holds for the course."""
    rows = backend.query(f"SELECT toString(dump_id) AS d, count() AS n FROM {qualified_name(backend.database, table)} "
                         f"WHERE course_key = '{course_key}' GROUP BY d")
    return {row["d"]: int(row["n"]) for row in rows}


def test_a_course_whose_rows_were_deleted_is_not_in_clickhouse(courses, clickhouse):
    gone, *others = courses
    for table in COURSE_TABLES:
        delete_rows(clickhouse, table, f"course_key = '{gone}'")

    code, report = verify(*COURSES)

    assert code == 1
    rows = expected(gone)
    assert differ(report) == {gone: ("absent", {"tables": {
        table: {"expected": rows[table], "found": 0, "distinct": 0} for table in COURSE_TABLES}})}
    assert report["counts"]["ok"] == 2
    assert Verdict.objects.get(subject=gone).verdict == Verdict.Kind.ABSENT
    repair_and_verify_again(courses)
    assert sum(held(clickhouse, COURSE_BLOCKS.name, gone).values()) == rows[COURSE_BLOCKS.name]


def test_one_dropped_block_row_is_a_missing_row_with_its_numbers(courses, clickhouse):
    key = courses[1]
    blocks = expected(key)[COURSE_BLOCKS.name]
    victim = clickhouse.query(f"SELECT location FROM {qualified_name(clickhouse.database, COURSE_BLOCKS.name)} "
                              f"WHERE course_key = '{key}' ORDER BY `order` DESC LIMIT 1")[0]["location"]
    delete_rows(clickhouse, COURSE_BLOCKS.name, f"location = '{victim}'")

    code, report = verify(*COURSES)
    text = run_text(*COURSES)

    assert code == 1
    verdict, details = differ(report)[key]
    assert verdict == "missing"
    assert details["tables"][COURSE_BLOCKS.name] == {"expected": blocks, "found": blocks - 1, "distinct": blocks - 1}
    assert details["tables"][COURSE_OVERVIEWS.name] == {"expected": 1, "found": 1, "distinct": 1}
    assert f"  course_structure {key}: missing rows: course_blocks: {blocks - 1} of {blocks} rows" in text
    assert "To repair: outbox_verify --repair" in text
    repair_and_verify_again(courses)


def test_a_batch_stored_twice_is_duplicates_and_deduplicate_removes_them(courses, clickhouse):
    key = courses[2]
    blocks = expected(key)[COURSE_BLOCKS.name]
    assert insert_again(clickhouse, key) == blocks

    code, report = verify(*COURSES)
    text = run_text(*COURSES)

    assert code == 1
    verdict, details = differ(report)[key]
    assert verdict == "duplicates"
    assert details["tables"][COURSE_BLOCKS.name] == {"expected": blocks, "found": 2 * blocks, "distinct": blocks}
    assert f"{key}: duplicated rows: course_blocks: {2 * blocks} rows, {blocks} distinct" in text
    assert "clickhouse_outbox_schema --enable-dedup" in text and "outbox_verify --deduplicate" in text

    code, report = verify(*COURSES, "--deduplicate")

    assert report["deduplicated"] == [COURSE_BLOCKS.name]
    assert held(clickhouse, COURSE_BLOCKS.name, key) == {str(latest(key).dump_id): blocks}
    code, again = verify(*COURSES)
    assert (code, again["differ"]) == (0, [])


def test_a_batch_stored_twice_is_repaired_by_a_newer_snapshot(courses, clickhouse):
    """Without --deduplicate the old copies stay, but the dashboards read the newest dump_id, delivered once."""
    key = courses[0]
    insert_again(clickhouse, key)
    before = latest(key).dump_id

    repair_and_verify_again(courses)

    assert latest(key).dump_id != before
    assert held(clickhouse, COURSE_BLOCKS.name, key)[str(latest(key).dump_id)] == expected(key)[COURSE_BLOCKS.name]


def test_a_course_published_behind_the_outbox_is_stale_exit_2(courses, clickhouse, olx_source, tmp_path):
    key = courses[0]
    taken = latest(key).created
    publish_behind_the_outbox(olx_source, key, tmp_path)

    code, report = verify(*COURSES)

    assert code == 2
    verdict, details = differ(report)[key]
    assert verdict == "stale"
    assert details["taken_at"] < details["source_changed_at"]
    assert details["tables"][COURSE_BLOCKS.name]["found"] == expected(key)[COURSE_BLOCKS.name]  # what was sent is there
    assert latest(key).created < taken

    repair_and_verify_again(courses)

    assert expected(key)[COURSE_BLOCKS.name] > expected(courses[1])[COURSE_BLOCKS.name]  # the newer version
    assert held(clickhouse, COURSE_BLOCKS.name, key)[str(latest(key).dump_id)] == expected(key)[COURSE_BLOCKS.name]


def test_a_course_the_outbox_never_sent_and_one_not_delivered_yet(courses, olx_source, tmp_path):
    from clickhouse_outbox.testing.generator import write_course_export

    before_the_plugin = str(olx_source.add_export(
        write_course_export(tmp_path / "more", blocks=4, org="VerifyX", course="Old", run="R1")))
    waiting = str(olx_source.add_export(
        write_course_export(tmp_path / "more", blocks=4, org="VerifyX", course="New", run="R1")))
    course_published(sender=None, course_key=waiting)  # queued, not drained

    code, report = verify(*COURSES)

    assert code == 1
    assert differ(report) == {before_the_plugin: ("never", {})}
    assert report["counts"]["undelivered"] == 1 and report["counts"]["ok"] == 3
    repair_and_verify_again([*courses, before_the_plugin, waiting])
    assert Snapshot.objects.filter(subject=before_the_plugin).count() == 1


def test_a_course_sent_before_the_outbox_is_never_sent_with_what_clickhouse_holds(courses, clickhouse):
    """Rows the peer's sink sent (here: delivered, then the outbox's records of them gone) are counted, not lost."""
    key = courses[1]
    rows = expected(key)
    Snapshot.objects.filter(subject=key).delete()

    code, report = verify(*COURSES)
    text = run_text(*COURSES)

    assert code == 1
    assert differ(report) == {key: ("never", {"held": rows})}
    assert (f"{key}: never sent by the outbox; ClickHouse holds course_blocks: {rows['course_blocks']} rows; "
            "course_overviews: 1 row; course_relationships: ") in text
    repair_and_verify_again(courses)


def test_named_courses_and_changed_since(courses, clickhouse):
    delete_rows(clickhouse, COURSE_BLOCKS.name, f"course_key = '{courses[0]}'")

    _, named = verify(*COURSES, courses[1])
    _, since = verify("--changed-since", "2000-01-01T00:00:00Z")

    assert (named["checked"], named["exit_code"]) == (1, 0)
    assert (since["checked"], set(differ(since))) == (3, {courses[0]})


def test_an_unknown_course_key_is_a_clear_error():
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="not-a-key"):
        call_command("outbox_verify", "--producer", "course_structure", "not-a-key", stdout=io.StringIO())


def run_text(*args):
    out = io.StringIO()
    try:
        call_command("outbox_verify", *args, stdout=out, stderr=io.StringIO())
    except Exception as exc:  # noqa: BLE001 (the exit status is checked through --json)
        out.write(f"\n{exc}")
    return out.getvalue()
