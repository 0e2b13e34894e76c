"""
Default settings of clickhouse_outbox inside edx-platform (the CMS and the LMS alike).

Every setting is read at call time through clickhouse_outbox.conf; checks.py rejects bad
values at start-up.
"""

from clickhouse_outbox import conf


def plugin_settings(settings):
    """Install the defaults, keeping any value the deployment already set."""
    # .. setting_name: EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG
    # .. setting_default: {"url": "http://clickhouse:8123", "username": "ch_cms", "password": "",
    #    "database": "event_sink", "timeout_secs": 5, "connect_timeout_secs": 3}
    # .. setting_description: Where ClickHouse is, with the keys the event-sink plugins used.
    #    `url`: http(s)://host:port of ClickHouse's HTTP interface (no credentials in it), or
    #    chdb:///absolute/path for the embedded engine. `timeout_secs` is the read timeout,
    #    `connect_timeout_secs` the connect timeout. The password is sent in a header only.
    #    `urls` (instead of `url`): the replicas of one shard, a list or a comma-separated
    #    string of http(s) URLs; a send goes to the next one when a replica is unreachable.
    #    `insert_quorum` (optional, at least 2): inserts are acknowledged once that many
    #    replicas have the rows.
    if not hasattr(settings, "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG"):
        settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(conf.DEFAULT_BACKEND_CONFIG)

    # .. setting_name: CLICKHOUSE_OUTBOX_ENABLED
    # .. setting_default: True
    # .. setting_description: Whether changes queue snapshots (every producer at once). Draining is not affected.

    # .. setting_name: CLICKHOUSE_OUTBOX_<PRODUCER>_ENABLED
    # .. setting_default: None (True for CLICKHOUSE_OUTBOX_COURSE_STRUCTURE_ENABLED)
    # .. setting_description: One per producer: COURSE_STRUCTURE, COURSE_ENROLLMENT, USER_PROFILE,
    #    EXTERNAL_ID, TAXONOMY, TAG, OBJECT_TAG, and USER_RETIREMENT (the deletes of a retired user's
    #    rows). True or False turns the producer on or off; None (not set) follows platform-plugin-aspects'
    #    switch for the same data, EVENT_SINK_CLICKHOUSE_<MODEL>_ENABLED or the waffle flag
    #    event_sink_clickhouse.<model>.enabled (MODEL: course_overviews, course_enrollment, user_profile,
    #    external_id, taxonomy, tag, object_tag, auth_user). USER_RETIREMENT is also on whenever a producer
    #    of personal data is. Turn the peer's sink off when this producer is on (system check W033).

    # .. setting_name: EVENT_SINK_CLICKHOUSE_PII_MODELS
    # .. setting_default: ["user_profile", "external_id"]
    # .. setting_description: platform-plugin-aspects' setting: the tables that hold users' personal data.
    #    A retirement deletes the user's rows from each of them that the outbox writes (auth_user, the
    #    peer's retirement sink, is not a table) and removes them from the outbox's own copies.

    # .. setting_name: EVENT_SINK_CLICKHOUSE_MODEL_CONFIG
    # .. setting_default: edx-platform's and openedx-learning's models
    # .. setting_description: platform-plugin-aspects' setting: where each model the producers read lives,
    #    {"user_profile": {"module": "common.djangoapps.student.models", "model": "UserProfile"}, ...}.
    #    Entries left out take the platform's (clickhouse_outbox.sources.platform.DEFAULT_MODELS).

    # .. setting_name: CLICKHOUSE_OUTBOX_COURSE_SOURCE
    # .. setting_default: "clickhouse_outbox.sources.modulestore.ModulestoreSource"
    # .. setting_description: Dotted path of the course source class. Inside edx-platform, the
    #    modulestore; the standalone project uses clickhouse_outbox.sources.olx.OlxFolderSource.

    # .. setting_name: CLICKHOUSE_OUTBOX_OLX_DIR
    # .. setting_default: ""
    # .. setting_description: Folder of OLX exports read by OlxFolderSource.

    # .. setting_name: CLICKHOUSE_OUTBOX_BATCH_ROWS
    # .. setting_default: 50000
    # .. setting_description: Most rows sent in one INSERT (a batch). At most 1,000,000, so
    #    ClickHouse writes a batch as one block, all or nothing.

    # .. setting_name: CLICKHOUSE_OUTBOX_ENTRY_MAX_BYTES
    # .. setting_default: 1048576
    # .. setting_description: Largest payload of one outbox row; a snapshot's rows for a table
    #    are split above it. Keep it well under the database's max_allowed_packet.

    # .. setting_name: CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS
    # .. setting_default: 10
    # .. setting_description: How often celery beat runs the drain task.

    # .. setting_name: CLICKHOUSE_OUTBOX_DRAIN_MAX_SECS
    # .. setting_default: 50
    # .. setting_description: How long one run of the drain task may keep claiming batches.

    # .. setting_name: CLICKHOUSE_OUTBOX_LEASE_SECS
    # .. setting_default: 300
    # .. setting_description: How long a claimed batch belongs to its drainer; after that (the
    #    drainer died) another drainer takes it. Must exceed the ClickHouse timeouts.

    # .. setting_name: CLICKHOUSE_OUTBOX_CLAIM_LOCKS
    # .. setting_default: True
    # .. setting_description: Whether each drain run and dump worker holds a database lock for as
    #    long as it runs (PostgreSQL: an advisory lock; MySQL/MariaDB: GET_LOCK; SQLite: a locked
    #    file beside the database file), named by what it claims: when its process dies, the
    #    server drops the lock and the next claim takes its batches, requested snapshots and
    #    dump subjects at once instead of after CLICKHOUSE_OUTBOX_LEASE_SECS. Turn it off where
    #    a drainer's connections may reach different servers that each think they hold the
    #    locks (a multi-primary cluster: Galera is detected and left out on its own) or go
    #    through a pooler that shares sessions between clients (PgBouncer in transaction mode);
    #    the lease alone then frees a dead drainer's claims.

    # .. setting_name: CLICKHOUSE_OUTBOX_MAX_ATTEMPTS
    # .. setting_default: 12
    # .. setting_description: Sends of a batch before it is marked failed (it then waits for
    #    a requeue; failed rows are never deleted by age).

    # .. setting_name: CLICKHOUSE_OUTBOX_BACKOFF_BASE_SECS
    # .. setting_default: 5
    # .. setting_description: First retry delay; it doubles with each attempt, with jitter.

    # .. setting_name: CLICKHOUSE_OUTBOX_BACKOFF_MAX_SECS
    # .. setting_default: 3600
    # .. setting_description: Longest retry delay.

    # .. setting_name: CLICKHOUSE_OUTBOX_RETENTION_DAYS
    # .. setting_default: 7
    # .. setting_description: How long sent rows stay in the outbox before they are purged.

    # .. setting_name: CLICKHOUSE_OUTBOX_DUMP_CHUNK_COURSES
    # .. setting_default: 20
    # .. setting_description: Courses a dump job's worker claims at a time. A worker killed
    #    mid-chunk leaves at most this many courses to be taken again when their lease ends.

    # .. setting_name: CLICKHOUSE_OUTBOX_DUMP_CHUNK_ROWS
    # .. setting_default: 1000
    # .. setting_description: Enrollments, profiles, external ids or tags a dump job's worker claims,
    #    reads (one query) and queues (one transaction) at a time.

    # .. setting_name: CLICKHOUSE_OUTBOX_VERIFY_INTERVAL_SECS
    # .. setting_default: 0
    # .. setting_description: Seconds between periodic verifications (outbox_verify of every producer
    #    that is on, as a job on celery beat: the entry "clickhouse_outbox.verify"); 0, the default,
    #    for none. What one finds differing makes outbox_status exit 1 until repaired.

    # .. setting_name: CLICKHOUSE_OUTBOX_VERIFY_CHUNK
    # .. setting_default: 1000
    # .. setting_description: Subjects a verification compares at a time (one aggregate query per
    #    table and replica).

    # .. setting_name: CLICKHOUSE_OUTBOX_DRAIN_THREADS
    # .. setting_default: 1
    # .. setting_description: Batches one drain run (the celery task, outbox_drain) claims and
    #    sends at once, each in a thread with its own database connection: with 2, ClickHouse
    #    parses one batch while the next is read, and a backlog drains faster (see the README's
    #    Performance section). At most 16.

    # .. setting_name: CLICKHOUSE_OUTBOX_SNAPSHOT_AT
    # .. setting_default: "publish"
    # .. setting_description: When a course's rows are read and serialized. "publish": in
    #    the publish's transaction (the rows are queued when it commits). "drain": the publish
    #    writes only a small "snapshot requested" row (about a millisecond whatever the
    #    course's size) and the drain reads the course later; for very large courses.

    # .. setting_name: CLICKHOUSE_OUTBOX_STATUS_MAX_AGE_SECS
    # .. setting_default: 900
    # .. setting_description: Default --max-age of outbox_status and outbox_drain: when the
    #    oldest unsent row has waited longer, they exit with status 2 (delivery is stuck).
    for name, default in conf.DEFAULTS.items():
        if not hasattr(settings, name):
            setattr(settings, name, default)

    install_beat_entry(settings)
    install_verify_entry(settings)


def install_verify_entry(settings):
    """The periodic verification, when CLICKHOUSE_OUTBOX_VERIFY_INTERVAL_SECS is above 0 (off by default)."""
    interval = getattr(settings, "CLICKHOUSE_OUTBOX_VERIFY_INTERVAL_SECS", 0)
    try:
        interval = float(interval or 0)
    except (TypeError, ValueError):
        return  # a bad value: the system checks report it
    if interval > 0:
        schedule = getattr(settings, "CELERYBEAT_SCHEDULE", None) or {}
        schedule.setdefault(VERIFY_BEAT_ENTRY, verify_entry(interval))
        settings.CELERYBEAT_SCHEDULE = schedule


def verify_entry(interval):
    """The periodic verification every `interval` seconds, expiring like the drain's entry."""
    return {"task": VERIFY_TASK, "schedule": interval,
            "options": {"expires": interval, "expire_seconds": max(1, int(interval))}}


BEAT_ENTRY = "clickhouse_outbox.drain"
#: The celery tasks' names (tasks.py), here so that the beat entry and the dump dispatcher need not import tasks.
DRAIN_TASK = "clickhouse_outbox.tasks.drain_outbox"
DUMP_TASK = "clickhouse_outbox.tasks.run_dump_job"
VERIFY_TASK = "clickhouse_outbox.tasks.verify_outbox"
VERIFY_BEAT_ENTRY = "clickhouse_outbox.verify"


def beat_entry(interval):
    """
    The periodic drain every `interval` seconds, each run expiring if not started by the next.
    Celery's own scheduler reads `expires`; django-celery-beat's DatabaseScheduler reads only
    `expire_seconds` (a whole number), so both are given.
    """
    try:
        whole_seconds = max(1, int(interval))
    except (TypeError, ValueError):
        whole_seconds = interval  # a bad value: the system checks report it with a fix
    return {"task": DRAIN_TASK, "schedule": interval, "options": {"expires": interval, "expire_seconds": whole_seconds}}


def install_beat_entry(settings, replacing=None):
    """
    Put the periodic drain in celery beat's schedule (edx-platform configures celery from
    old-style setting names). An entry the deployment wrote itself is kept; `replacing` is
    the entry this plugin installed earlier, which may be updated.
    """
    schedule = getattr(settings, "CELERYBEAT_SCHEDULE", None) or {}
    current = schedule.get(BEAT_ENTRY)
    if current is None or current == replacing:
        schedule[BEAT_ENTRY] = beat_entry(settings.CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS)
    settings.CELERYBEAT_SCHEDULE = schedule
