-- aspects-dbt model dim_most_recent_tags, verbatim.
-- Source: openedx/aspects-dbt, models/tags/dim_most_recent_tags.sql at commit 6dc156a7790022a20e9d9ef6a584cabd462c995e
--   (the file last changed in 78ae204, 2026-02-11).
-- The test runs its SELECT, with the config() block left out, source("event_sink", T) rendered as the
-- test database's T, and ref(M) as the query of model M (a subquery).

{{
    config(
        materialized="materialized_view",
        schema=env_var("ASPECTS_EVENT_SINK_DATABASE", "event_sink"),
        engine=get_engine("ReplacingMergeTree()"),
        order_by="(id)",
        post_hook="OPTIMIZE TABLE {{ this }} {{ on_cluster() }} FINAL",
    )
}}
with
    latest as (
        select id, max(time_last_dumped) as last_modified
        from {{ source("event_sink", "tag") }}
        group by id
    )
select
    tag.id as id,
    tag.taxonomy as taxonomy,
    tag.parent as parent,
    tag.value as value,
    tag.external_id as external_id,
    tag.lineage as lineage
from {{ source("event_sink", "tag") }} tag
inner join latest on latest.id = tag.id and tag.time_last_dumped = latest.last_modified
