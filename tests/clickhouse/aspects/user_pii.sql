-- aspects-dbt model user_pii, verbatim.
-- Source: openedx/aspects-dbt, models/users/user_pii.sql at commit 6dc156a7790022a20e9d9ef6a584cabd462c995e
--   (the file last changed in 78ae204, 2026-02-11).
-- The test runs its SELECT, with the config() block left out, source("event_sink", T) rendered as the
-- test database's T, and ref(M) as the query of model M (a subquery).

{{
    config(
        materialized="dictionary",
        schema=env_var("ASPECTS_EVENT_SINK_DATABASE", "event_sink"),
        fields=[
            ("user_id", "Int32"),
            ("external_user_id", "String"),
            ("username", "String"),
            ("name", "String"),
            ("email", "String"),
        ],
        primary_key="(user_id, external_user_id)",
        layout="COMPLEX_KEY_SPARSE_HASHED()",
        lifetime=env_var("ASPECTS_PII_CACHE_LIFETIME", "120"),
        source_type="clickhouse",
        connection_overrides={
            "host": "localhost",
        },
    )
}}

with
    most_recent_user_profile as (
        select user_id, max(time_last_dumped) as time_last_dumped
        from {{ source("event_sink", "user_profile") }}
        group by user_id
    )
select
    external_id.user_id as user_id,
    if(
        empty(external_id.external_user_id),
        concat('mailto:', user_profile.email),
        external_id.external_user_id::String
    ) as external_user_id,
    user_profile.username as username,
    user_profile.name as name,
    user_profile.email as email
from most_recent_user_profile
left outer join
    {{ source("event_sink", "external_id") }} external_id
    on most_recent_user_profile.user_id = external_id.user_id
left outer join
    {{ source("event_sink", "user_profile") }} user_profile
    on user_profile.user_id = most_recent_user_profile.user_id
    and user_profile.time_last_dumped = most_recent_user_profile.time_last_dumped
