"""
The peer's course publish: platform-plugin-aspects 2.1.0's celery task
`platform_plugin_aspects.tasks.dump_course_to_clickhouse(course_key)`, which its
COURSE_PUBLISHED receiver `.delay()`s, run synchronously in this process as a worker runs it
(Task.__call__), for one course of --blocks blocks, --repeat times (after --warmup untimed).

What the task does (its own code, unchanged): CourseOverviewSink.is_enabled() (the settings
switch), CourseOverview.objects.get(id=course_key) from the peer's database (MariaDB,
PostgreSQL or SQLite: the server the scenario runs on), its DRF CourseOverviewSerializer (with
get_tags_for_block(course)), one CSV INSERT of the overview; then its nested XBlockSink walks
modulestore().get_course(...) block by block through get_children(), then get_items(...) for
the detached blocks, serializes each block (get_tags_for_block each, json.dumps of its
xblock_data_json) and POSTs one CSV INSERT to course_blocks. It writes no course_relationships
(ours does: `relationship_rows_not_written_by_peer`). Every call is a fresh dump (new dump_id).

The course comes from clickhouse_outbox.testing.generator.generate_published_course (org GenX,
course Gen101, run R1, seed 0: the course ours publishes), loaded before timing into the stand-in
modulestore of bench/peer/standins (items built once: the peer pays nothing for a modulestore
read, a lower bound of its cost) and its CourseOverview into the peer's database. Tags: the
stand-in tagging API answers none (standins/openedx/core/djangoapps/content_tagging/api.py).
"""

import gc
import resource
import statistics
import time
from datetime import UTC, datetime

TABLES = ("course_overviews", "course_blocks", "course_relationships")
DETACHED_BLOCKS_PER_COURSE = 2  # the generator adds about/overview and course_info/updates


def prepare(args):
    """The CourseOverview table made again in the peer's database, the course loaded (untimed)."""
    from clickhouse_outbox.testing.generator import generate_published_course
    from course_overviews.models import CourseOverview
    from django.db import connection
    from xmodule.modulestore.django import modulestore

    with connection.schema_editor() as editor:
        if CourseOverview._meta.db_table in connection.introspection.table_names():
            editor.delete_model(CourseOverview)
        editor.create_model(CourseOverview)
    course = generate_published_course(args.blocks, org="GenX", course="Gen101", run="R1", seed=0)
    modulestore().add_course(course)
    CourseOverview.from_published_course(course, modified=datetime.now(UTC)).save(force_insert=True)
    return str(course.course_key)


def run(args, clickhouse):
    from course_overviews.models import CourseOverview
    from django.db import connection
    from platform_plugin_aspects.tasks import dump_course_to_clickhouse

    course_key = prepare(args)
    before = {table: clickhouse.count(args.database, table) or 0 for table in TABLES}
    rss_before = peak_rss_mb()
    samples, error, runs = [], None, 0
    for attempt in range(args.warmup + args.repeat):
        gc.collect()
        runs += 1
        started = time.perf_counter()
        try:
            dump_course_to_clickhouse(course_key)  # the celery task object: Task.__call__ runs its body here
        except Exception as exc:  # the peer raises on HTTP errors after logging them
            error = f"{type(exc).__name__}: {exc}"
            break
        elapsed_ms = (time.perf_counter() - started) * 1000
        if attempt >= args.warmup:
            samples.append(round(elapsed_ms, 3))
    written = {table: (clickhouse.count(args.database, table) or 0) - before[table] for table in TABLES}
    expected = {"course_overviews": runs, "course_blocks": runs * (args.blocks + DETACHED_BLOCKS_PER_COURSE),
                "course_relationships": 0}
    with connection.schema_editor() as editor:  # the table is this run's only
        editor.delete_model(CourseOverview)
    return {
        "peer": "platform-plugin-aspects 2.1.0", "scenario": "publish", "blocks": args.blocks,
        "samples_ms": samples,
        "median_ms": round(statistics.median(samples), 3) if samples else None,
        "min_ms": min(samples) if samples else None, "max_ms": max(samples) if samples else None,
        "peak_rss_mb": peak_rss_mb(), "rss_before_timing_mb": rss_before,
        "rows_written": written, "rows_expected": expected,
        "rows_dropped": {table: expected[table] - written[table] for table in TABLES},
        "relationship_rows_not_written_by_peer": runs * (args.blocks - 1),
        "runs_including_warmup": runs, "database": connection.vendor, "error": error,
    }


def peak_rss_mb():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
