"""
A verification in one chunk of CLICKHOUSE_OUTBOX_VERIFY_CHUNK = 100,000 subjects (the most the
checks accept) over courses with long keys: each query over the chunk would pass ClickHouse's
max_query_size (262,144 bytes), which answers it with a syntax error. The queries are sized
by bytes instead, and the verdicts are the same as a verification in chunks of 100, whose
queries are small: on the real 18.16 server and on chdb.
"""

import pytest

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.clickhouse.tables import COURSE_BLOCKS, COURSE_OVERVIEWS, COURSE_RELATIONSHIPS
from clickhouse_outbox.dumps.jobs import start_job
from clickhouse_outbox.dumps.run import run_job
from clickhouse_outbox.models import DumpJob, Snapshot, Verdict
from clickhouse_outbox.outbox.drain import drain_until_empty
from clickhouse_outbox.producers.course_structure import COURSES
from clickhouse_outbox.testing.generator import generate_published_course
from tests.factories import MemorySource, with_source
from tests.reconcile.helpers import delete_rows

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

DELIVERED = 1_500  # ~190 bytes of key and dump_id each in a query: ~290 KB
NEVER_SENT = 1_800  # ~160 bytes of key each: ~290 KB
ORG = "UniversitéOrganisation" + "X" * 30


def course(number):
    return generate_published_course(blocks=1, org=ORG, course=f"{'LongCourseName' * 6}{number:05d}", run="Run2026",
                                     seed=number)


def verdicts(producers):
    """{subject: (verdict, details)} of a verification of every course, as its job records them."""
    job = start_job(DumpJob.Scope.ALL, origin="test", producers=[COURSES.name], action=DumpJob.Action.VERIFY)
    job = run_job(job, producers=producers)
    assert job.status == DumpJob.Status.DONE, job.error
    return {verdict.subject: (verdict.verdict, verdict.details) for verdict in Verdict.objects.filter(job=job)}


def test_a_verification_in_one_chunk_of_many_long_keys_matches_one_in_small_chunks(clickhouse, settings):
    courses = [course(number) for number in range(DELIVERED + NEVER_SENT)]
    producers = with_source(MemorySource(courses[:DELIVERED]))
    job = run_job(start_job(DumpJob.Scope.ALL, origin="test", producers=[COURSES.name]), producers=producers)
    assert job.status == DumpJob.Status.DONE
    result, left = drain_until_empty(timeout=300)
    assert result.ok and not left["pending_entries"], (result, left)
    absent, missing = (str(courses[number].course_key) for number in (3, 1_234))
    for table in (COURSE_OVERVIEWS, COURSE_BLOCKS, COURSE_RELATIONSHIPS):
        delete_rows(clickhouse, table.name, f"course_key = '{absent}'")
    delete_rows(clickhouse, COURSE_BLOCKS.name, f"course_key = '{missing}'")
    # One of the never-sent courses has rows from before the outbox (the peer's sink sent them).
    before = str(courses[DELIVERED + 7].course_key)
    clickhouse.command(f"INSERT INTO {qualified_name(clickhouse.database, COURSE_OVERVIEWS.name)} "
                       f"(org, course_key, display_name) VALUES ('{ORG}', '{before}', 'From before')")
    producers = with_source(MemorySource(courses))  # the source now lists the never-sent courses too
    assert sum(len(str(c.course_key).encode()) for c in courses[DELIVERED:]) > 262_144

    settings.CLICKHOUSE_OUTBOX_VERIFY_CHUNK = 100_000
    in_one_chunk = verdicts(producers)
    settings.CLICKHOUSE_OUTBOX_VERIFY_CHUNK = 100
    in_small_chunks = verdicts(producers)

    assert in_one_chunk == in_small_chunks
    kinds = {}
    for subject, (verdict, _) in in_one_chunk.items():
        kinds.setdefault(verdict, set()).add(subject)
    assert kinds.pop(Verdict.Kind.ABSENT) == {absent}
    assert kinds.pop(Verdict.Kind.MISSING) == {missing}
    assert kinds.pop(Verdict.Kind.NEVER) == {str(c.course_key) for c in courses[DELIVERED:]}
    assert len(kinds.pop(Verdict.Kind.OK)) == DELIVERED - 2
    assert kinds == {}
    assert in_one_chunk[before][1] == {"held": {COURSE_OVERVIEWS.name: 1}}
    assert Snapshot.objects.filter(producer=COURSES.name).count() == DELIVERED
