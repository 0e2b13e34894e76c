"""
Every producer's rows, as the consumer reads them: Aspects' own tables (replayed from its
rendered migrations on chdb, as test_aspects_ddl.py does), filled by the drain from what
real changes queued (learners registered, enrolled and retired; a taxonomy, tags and an
object tag; a tagged course published), then read with aspects-dbt's own models
(tests/clickhouse/aspects/*.sql, verbatim): the PII dictionary's query `user_pii`, the
tags' `dim_most_recent_*` and the course tags' dictionary `dim_most_recent_course_tags`.
"""

import re
from pathlib import Path

import pytest

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.outbox.drain import drain_until_empty
from clickhouse_outbox.producers.course_structure import take_course_snapshot
from clickhouse_outbox.receivers import user_retired
from clickhouse_outbox.testing.generator import generate_published_course
from tests.factories import MemorySource
from tests.learners import change_enrollment, enroll, give_external_id, make_learner, tag_object, taxonomy_with_tags

from .test_aspects_ddl import replay

pytestmark = [pytest.mark.slow, pytest.mark.chdb, pytest.mark.django_db]

MODELS = Path(__file__).resolve().parent.parent / "clickhouse" / "aspects"
#: The dbt models other models ref(): built as dbt materializes them (tags as ReplacingMergeTree by id).
MATERIALIZED = {
    "dim_most_recent_tags": "ReplacingMergeTree ORDER BY id",
    "dim_most_recent_taxonomies": "ReplacingMergeTree ORDER BY id",
    "dim_course_names": "MergeTree ORDER BY course_key",
}


def model_sql(name, database):
    """aspects-dbt's model `name` as one query: its config() block out, its sources and refs named in `database`."""
    sql = (MODELS / f"{name}.sql").read_text()
    sql = re.sub(r"^--.*$", "", sql, flags=re.MULTILINE)
    sql = re.sub(r"^\{\{\s*config\(.*?^\}\}$", "", sql, flags=re.DOTALL | re.MULTILINE)
    sql = re.sub(r"""\{\{\s*source\("event_sink",\s*"(\w+)"\)\s*\}\}""",
                 lambda match: qualified_name(database, match.group(1)), sql)
    sql = re.sub(r"""\{\{\s*ref\("(\w+)"\)\s*\}\}""", lambda match: qualified_name(database, match.group(1)), sql)
    assert "{{" not in sql, sql
    return sql


def read_model(backend, name):
    return backend.query(model_sql(name, backend.database))


def materialize(backend, name):
    """A model other models ref(), as a table holding its query's rows (dbt's backfill)."""
    target = qualified_name(backend.database, name)
    backend.command(f"DROP TABLE IF EXISTS {target}")
    backend.command(f"CREATE TABLE {target} ENGINE = {MATERIALIZED[name]} AS {model_sql(name, backend.database)}")


@pytest.fixture
def consumer(aspects, chdb_backend, settings):
    """Aspects' event_sink tables on chdb; the plugin drains into them."""
    replay(chdb_backend, aspects)
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = {"url": f"chdb://{chdb_backend.path}", "database": aspects.database}
    return chdb_backend


def test_learners_read_back_through_the_pii_dictionary(consumer):
    ada, grace, alan = make_learner(), make_learner("grace", "Grace Hopper"), make_learner("alan", "Alan Turing")
    ids = {user.username: give_external_id(user).external_user_id for user in (ada, grace, alan)}
    change_enrollment(enroll(grace), mode="verified")
    enroll(ada)
    user_retired(sender=None, user=alan)
    assert drain_until_empty(timeout=60)[0].ok

    pii = sorted(read_model(consumer, "user_pii"), key=lambda row: row["username"])
    assert [(row["username"], row["name"], row["email"], row["external_user_id"]) for row in pii] == [
        ("ada", "Ada Lovelace", "ada@example.com", str(ids["ada"])),
        ("grace", "Grace Hopper", "grace@example.com", str(ids["grace"])),
    ]  # and nothing of Alan, retired
    assert {row["user_id"] for row in pii} == {ada.pk, grace.pk}
    modes = consumer.query(f"SELECT username, argMax(mode, time_last_dumped) AS mode, "
                           f"argMax(is_active, time_last_dumped) AS active FROM "
                           f"{qualified_name(consumer.database, 'course_enrollment')} GROUP BY username ORDER BY username")
    assert [(row["username"], row["mode"], bool(row["active"])) for row in modes] == [
        ("ada", "audit", True), ("grace", "verified", True)]


def test_tags_read_back_through_the_tag_models_and_the_course_tags_dictionary(consumer):
    taxonomy, (science, physics) = taxonomy_with_tags()
    course = generate_published_course(8, org="TagX", course="T1", run="R1", seed=1)
    course.tags = sorted([science.pk, physics.pk])  # what get_tags_for_block gives: the tag and its parents
    object_tag = tag_object(course.course_key, physics)
    take_course_snapshot(course.course_key, "published", source=MemorySource([course]))
    physics.value = "Physics (classical)"
    physics.save()
    assert drain_until_empty(timeout=60)[0].ok

    tags = {row["id"]: row for row in read_model(consumer, "dim_most_recent_tags")}
    assert (tags[physics.pk]["value"], tags[physics.pk]["parent"], tags[physics.pk]["lineage"]) == (
        "Physics (classical)", science.pk, '["Science", "Physics (classical)"]')
    assert (tags[science.pk]["parent"], tags[science.pk]["taxonomy"]) == (0, taxonomy.pk)
    assert read_model(consumer, "dim_most_recent_taxonomies") == [{"id": taxonomy.pk, "name": "Subjects"}]
    (object_row,) = read_model(consumer, "dim_most_recent_object_tags")
    assert (object_row["id"], object_row["object_id"], object_row["_value"]) == (
        object_tag.pk, str(course.course_key), "Physics")

    for name in MATERIALIZED:
        materialize(consumer, name)
    course_tags = read_model(consumer, "dim_most_recent_course_tags")
    assert sorted((row["course_key"], row["tag"], row["taxonomy_name"], row["tag_id"]) for row in course_tags) == sorted([
        (str(course.course_key), "Science", "Subjects", science.pk),
        (str(course.course_key), "Physics (classical)", "Subjects", physics.pk),
    ])
