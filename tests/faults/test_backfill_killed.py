"""
Fault test: a whole-table dump of the learner tables (walked by key range: dumps.ranges)
SIGKILLed mid-way, twice, and resumed by running the same command again.

`manage.py outbox_requeue --all --producer user_profile --producer external_id --producer
course_enrollment` runs in a process of its own with chunks of CHUNK rows; this process
watches the chunks it queues and SIGKILLs it once a random number of them (from the seed)
is queued: no finally block, no rollback by the process itself. The same command run again
joins the job under way (the dead process's cursor is free: its database lock went with it;
short leases as the last resort) and goes on from each producer's cursor. Once it is done:
each table's chunks follow each other without a gap or an overlap, every row of the source
was queued exactly once, and after the drain ClickHouse holds every row once.
"""

import json
import os
import random
import signal
import time

import pytest

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.models import DumpChunk, DumpCursor, DumpJob, OutboxEntry, Snapshot
from clickhouse_outbox.outbox.drain import drain_until_empty
from outbox_project.platform.models import CourseEnrollment, ExternalId, UserProfile
from tests.learners import enroll, give_external_id, make_learner
from tests.processes import manage, project_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SEED = int(os.environ.get("FAULTS_SEED", random.randrange(1_000_000)))
LEARNERS = ("user_profile", "external_id", "course_enrollment")
KEYS = {"user_profile": "id", "external_id": "external_user_id", "course_enrollment": "id"}
USERS = 120
CHUNK = 7
WAIT = 120
COMMAND = ("outbox_requeue", "--all", *[part for name in LEARNERS for part in ("--producer", name)])


def site_before_install(rng):
    from opaque_keys.edx.keys import CourseKey

    courses = [CourseKey.from_string(f"course-v1:Kill+K{n}+2026") for n in range(3)]
    for index in range(USERS):
        user = make_learner(f"killed{index}", f"Learner {index}")
        give_external_id(user)
        for course in rng.sample(courses, rng.randint(1, 3)):
            enroll(user, course)
    Snapshot.objects.all().delete()  # made before install


def kill_after(env, chunks):
    """Start the dump, SIGKILL it once `chunks` chunks are queued; the chunks queued at that instant."""
    process = manage(*COMMAND, env=env)
    deadline = time.monotonic() + WAIT
    try:
        while DumpChunk.objects.count() < chunks:
            assert process.poll() is None, f"the dump ended before its kill: {process.stdout.read()}"
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=WAIT)
    return DumpChunk.objects.count()


def test_a_backfill_killed_twice_and_resumed_queues_each_row_once(server_clickhouse, settings):
    rng = random.Random(SEED)
    site_before_install(rng)
    total = {"user_profile": UserProfile.objects.count(), "external_id": ExternalId.objects.count(),
             "course_enrollment": CourseEnrollment.objects.count()}
    chunks_in_all = sum(-(-rows // CHUNK) for rows in total.values())
    env = project_env(settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG, CLICKHOUSE_OUTBOX_BACKFILL_CHUNK_ROWS=CHUNK,
                      CLICKHOUSE_OUTBOX_LEASE_SECS=5, CLICKHOUSE_TIMEOUT_SECS=1.5,
                      OUTBOX_LOG_LEVEL="WARNING")
    first, second = sorted(rng.sample(range(2, chunks_in_all - 2), 2))
    killed_at = [kill_after(env, first), kill_after(env, second)]
    job = DumpJob.objects.get()
    assert job.status == DumpJob.Status.RUNNING, "a killed dump stays under way"
    assert killed_at[1] < chunks_in_all

    resumed = manage(*COMMAND, env=env)
    output, _ = resumed.communicate(timeout=WAIT * 3)
    assert resumed.returncode == 0, output
    job.refresh_from_db()
    assert job.status == DumpJob.Status.DONE, output

    for name in LEARNERS:
        chunks = list(DumpChunk.objects.filter(job=job, producer=name).order_by("key_from"))
        assert chunks[0].key_from == 1
        assert [c.key_from for c in chunks[1:]] == [c.key_to + 1 for c in chunks[:-1]], f"{name}: a gap or an overlap"
        keys = [json.loads(line)[KEYS[name]] for entry in OutboxEntry.objects.filter(snapshot__chunk__in=chunks)
                for line in entry.lines().splitlines()]
        assert len(keys) == len(set(keys)) == total[name], f"{name}: {len(keys)} queued, {total[name]} rows"
        cursor = DumpCursor.objects.get(job=job, producer=name)
        assert cursor.finished and cursor.rows_done == total[name]

    result, _ = drain_until_empty(timeout=WAIT, backend=server_clickhouse)
    assert result.ok
    for name in LEARNERS:
        row = server_clickhouse.query(f"SELECT count() AS n, uniqExact({KEYS[name]}) AS k "
                                      f"FROM {qualified_name(server_clickhouse.database, name)}")[0]
        assert (int(row["n"]), int(row["k"])) == (total[name], total[name]), name
    print(f"seed {SEED}: killed after {killed_at} of {chunks_in_all} chunks; {sum(total.values())} rows once each")
