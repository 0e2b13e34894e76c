-- The Aspects event_sink course tables, as a single-node Aspects install creates them.
-- Source: tutor-contrib-aspects 6.1.0 (PyPI wheel), file
--   tutoraspects/templates/aspects/apps/aspects/migrations/alembic/versions/0007_event_sink.py
-- No later migration of that release alters these three tables. Copied verbatim, with the
-- migration's Python variables rendered as Tutor renders them without a cluster
-- (CLICKHOUSE_CLUSTER_NAME empty): {on_cluster} is "" and {engine} is MergeTree.
-- {{ ASPECTS_EVENT_SINK_DATABASE }} is Tutor's template variable; the test replaces it.

CREATE TABLE IF NOT EXISTS {{ ASPECTS_EVENT_SINK_DATABASE }}.course_overviews

(
    org String NOT NULL,
    course_key String NOT NULL,
    display_name String NOT NULL,
    course_start String NOT NULL,
    course_end String NOT NULL,
    enrollment_start String NOT NULL,
    enrollment_end String NOT NULL,
    self_paced BOOL NOT NULL,
    course_data_json String NOT NULL,
    created String NOT NULL,
    modified String NOT NULL,
    dump_id UUID NOT NULL,
    time_last_dumped String NOT NULL
) engine = MergeTree
    PRIMARY KEY (org, course_key, modified, time_last_dumped)
    ORDER BY (org, course_key, modified, time_last_dumped);

CREATE TABLE IF NOT EXISTS {{ ASPECTS_EVENT_SINK_DATABASE }}.course_blocks

(
    org String NOT NULL,
    course_key String NOT NULL,
    location String NOT NULL,
    display_name String NOT NULL,
    xblock_data_json String NOT NULL,
    order Int32 default 0,
    edited_on String NOT NULL,
    dump_id UUID NOT NULL,
    time_last_dumped String NOT NULL
) engine = MergeTree
    PRIMARY KEY (org, course_key, location, edited_on)
    ORDER BY (org, course_key, location, edited_on, order);

CREATE TABLE IF NOT EXISTS {{ ASPECTS_EVENT_SINK_DATABASE }}.course_relationships

(
    course_key String NOT NULL,
    parent_location String NOT NULL,
    child_location String NOT NULL,
    order Int32 NOT NULL,
    dump_id UUID NOT NULL,
    time_last_dumped String NOT NULL
) engine = MergeTree
    PRIMARY KEY (course_key, parent_location, child_location, time_last_dumped)
    ORDER BY (course_key, parent_location, child_location, time_last_dumped, order);
