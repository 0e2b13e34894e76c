"""
The fault tests on a learner stream: users registering (a profile), getting an external id,
enrolling, changing mode, renaming themselves, and some retiring, while ClickHouse is down,
a drainer is SIGKILLed, or four drainers race (and users retire while they run).

    (a) an outage of the test's own 18.16 server, retirements during it: every row lands
        once, and no row of a retired user is left in any PII table
    (b) the same retirement while both replicas of the test cluster are down
    (c) drainer processes SIGKILLed at random over the stream: every row arrives; the
        course_enrollment copies a killed drainer's resend left are exact (18.16 cannot
        deduplicate a plain MergeTree), ReplacingMergeTree's user_profile reads each once
    (d) four drainer processes at once, users retiring while they drain: every row once,
        no row of a retired user left
"""

import os
import random
import subprocess
import time

import pytest
from django.db import transaction

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.clickhouse.schema import create_schema
from clickhouse_outbox.models import Batch, Kind, OutboxEntry
from clickhouse_outbox.outbox.drain import backlog, drain, drain_until_empty
from clickhouse_outbox.receivers import user_retired
from outbox_project.platform.models import UserProfile
from tests.clickhouse_fixtures import replica_backend_config
from tests.faults.helpers import (
    LEARNER_TABLES,
    Drainer,
    assert_every_row_at_least_once_and_duplicates_exact,
    assert_every_row_exactly_once,
    ch_count,
    report,
    row_figures,
    run_drainers_until_empty,
)
from tests.learners import change_enrollment, enroll, give_external_id, make_learner
from tests.processes import ROOT, project_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SEED = int(os.environ.get("FAULTS_SEED", random.randrange(1_000_000)))
PII_TABLES = ("user_profile", "external_id")
COURSES = [f"course-v1:Faults+F{n}+2026" for n in range(3)]


def learner_stream(rng, count, prefix):
    """`count` learners, each in a transaction of its own as a request would be; returns the users."""
    from opaque_keys.edx.keys import CourseKey

    users = []
    for index in range(count):
        with transaction.atomic():
            user = make_learner(f"{prefix}{index}", f"Learner {prefix}{index}", year_of_birth=1990 + index % 20)
            give_external_id(user)
            for course in rng.sample(COURSES, rng.randint(1, 3)):
                enrollment = enroll(user, CourseKey.from_string(course))
                if rng.random() < 0.3:
                    change_enrollment(enrollment, mode="verified")
        if rng.random() < 0.4:
            rename(user, f"Renamed {prefix}{index}")
        users.append(user)
    return users


def rename(user, name):
    with transaction.atomic():
        profile = UserProfile.objects.get(user=user)
        profile.name = name
        profile.save()


def update_then_retire(user):
    """What a learner who retires does last: change their profile, then the retirement pipeline runs."""
    rename(user, "Last name before retiring")
    with transaction.atomic():
        user_retired(sender=None, user=user)


def wait_for_mutations(backend, timeout=60):
    deadline = time.monotonic() + timeout
    sql = f"SELECT count() AS n FROM system.mutations WHERE database = '{backend.database}' AND is_done = 0"
    while int(backend.query(sql)[0]["n"]):
        assert time.monotonic() < deadline, "ClickHouse's deletes (mutations) did not finish"
        time.sleep(0.05)


def retired_rows(backend, users):
    """Rows of `users` left in the PII tables (after ClickHouse applied the deletes)."""
    wait_for_mutations(backend)
    ids = ", ".join(str(user.pk) for user in users)
    return {table: ch_count(backend, table, f"user_id IN ({ids})") for table in PII_TABLES}


def final_profile_keys(backend):
    """user_profile as its readers see it (FINAL: ReplacingMergeTree folds copies of one (id, time_last_dumped))."""
    rows = backend.query(f"SELECT toString(dump_id) AS dump_id FROM {qualified_name(backend.database, 'user_profile')} FINAL")
    return sorted(row["dump_id"] for row in rows)


def queued_profile_keys():
    from tests.faults.helpers import queued_keys

    return sorted(key for (key,), copies in queued_keys("user_profile").items() for _ in range(copies))


@pytest.mark.clickhouse_server
def test_an_outage_with_retirements_during_it_loses_nothing_and_leaves_no_retired_users_row(
    own_clickhouse_server, own_clickhouse, fast_retries, settings
):
    rng = random.Random(SEED)
    before = learner_stream(rng, 10, "before")
    assert drain_until_empty(timeout=30)[0].ok
    assert ch_count(own_clickhouse, "external_id") == 10 and ch_count(own_clickhouse, "user_profile") >= 10

    own_clickhouse_server.stop()
    attempts = 0
    during = learner_stream(rng, 30, "during")
    retired = rng.sample(before, 4) + rng.sample(during, 3)  # rows of some were sent before the outage
    for user in retired:
        update_then_retire(user)
        attempts += not drain().ok
    assert attempts and Batch.objects.filter(status=Batch.Status.RETRY).exists()
    unsent_deletes = OutboxEntry.objects.filter(kind=Kind.DELETE).exclude(batch__status=Batch.Status.SENT).count()
    assert unsent_deletes == len(retired) * len(PII_TABLES)

    own_clickhouse_server.start()
    result, left = drain_until_empty(timeout=90, poll_interval=0.2)
    assert result.ok and not left["pending_entries"] and not left["open_batches"], (result, left)
    assert retired_rows(own_clickhouse, retired) == {"user_profile": 0, "external_id": 0}
    figures = assert_every_row_exactly_once(own_clickhouse, LEARNER_TABLES, retired=[user.pk for user in retired])
    report("learners outage", seed=SEED, failed_drains=attempts, retired=len(retired), **row_figures(figures))


@pytest.mark.clickhouse_cluster
def test_a_retirement_while_both_replicas_are_down_leaves_no_row_of_the_user(
    cluster_backends, cluster_config, fast_retries, settings
):
    create_schema(cluster_backends[0], cluster=cluster_config["cluster"])
    config = replica_backend_config(cluster_config, 0, cluster_backends[0].database)
    del config["url"]
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = {**config, "urls": cluster_config["urls"]}
    rng = random.Random(SEED)
    users = learner_stream(rng, 6, "cluster")
    assert drain_until_empty(timeout=60)[0].ok

    script = ROOT / "scripts" / "clickhouse-test-cluster"
    for replica in ("1", "2"):
        subprocess.run([str(script), "stop-replica", replica], check=True, capture_output=True, timeout=60)  # noqa: S603
    try:
        retired = users[:2]
        for user in retired:
            update_then_retire(user)
            drain()
        assert Batch.objects.filter(status=Batch.Status.RETRY, server_error=True).exists()  # neither replica answers
    finally:
        for replica in ("1", "2"):
            subprocess.run([str(script), "start-replica", replica], check=True, capture_output=True, timeout=120)  # noqa: S603
    result, left = drain_until_empty(timeout=120, poll_interval=0.5)
    assert result.ok and not left["pending_entries"], (result, left)
    for backend in cluster_backends:  # the mutation reached both replicas through ZooKeeper
        deadline = time.monotonic() + 60
        while (found := retired_rows(backend, retired)) != {"user_profile": 0, "external_id": 0}:
            assert time.monotonic() < deadline, found
            time.sleep(0.2)
        kept = ch_count(backend, "external_id")
        assert kept == len(users) - len(retired), kept


@pytest.mark.clickhouse_server
def test_drainers_killed_at_random_over_a_learner_stream_lose_nothing(server_clickhouse, settings, tmp_path):
    rng = random.Random(SEED)
    settings.CLICKHOUSE_OUTBOX_BATCH_ROWS = 8
    learner_stream(rng, 40, "killed")
    env = project_env(settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG, CLICKHOUSE_OUTBOX_LEASE_SECS=5,
                      CLICKHOUSE_TIMEOUT_SECS=1.5, CLICKHOUSE_OUTBOX_BATCH_ROWS=8, OUTBOX_LOG_LEVEL="WARNING",
                      CLICKHOUSE_OUTBOX_BACKOFF_BASE_SECS=0.1, CLICKHOUSE_OUTBOX_BACKOFF_MAX_SECS=0.5)
    kills = 0
    for trial in range(12):
        drainer = Drainer("outbox_drain", "--until-empty", "--timeout", "30", env=env,
                          log_path=tmp_path / f"drainer-{trial}.log")
        deadline = time.monotonic() + 20
        while not Batch.objects.exists() and drainer.running() and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.3))
        kills += drainer.running()
        drainer.kill()
        if not backlog()["pending_entries"]:
            break
    settings.CLICKHOUSE_OUTBOX_LEASE_SECS = 1
    Batch.objects.filter(status=Batch.Status.CLAIMED).update(lease_expires_at="2000-01-01T00:00:00Z")
    result, left = drain_until_empty(timeout=60)
    assert not left["pending_entries"] and not left["open_batches"], (result, left)
    figures, copies = assert_every_row_at_least_once_and_duplicates_exact(server_clickhouse, LEARNER_TABLES)
    assert final_profile_keys(server_clickhouse) == queued_profile_keys()  # what user_profile's readers see: once each
    report("learners SIGKILL", seed=SEED, kills=kills, copies={t: dict(c) for t, c in copies.items()},
           **row_figures(figures))


@pytest.mark.clickhouse_server
def test_four_drainers_with_users_retiring_meanwhile_send_every_row_once(server_clickhouse, settings, tmp_path):
    rng = random.Random(SEED)
    users = learner_stream(rng, 60, "race")
    env = project_env(settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG, CLICKHOUSE_OUTBOX_BATCH_ROWS=6,
                      OUTBOX_LOG_LEVEL="WARNING")
    drainers = [Drainer("outbox_drain", "--until-empty", "--timeout", "60", env=env,
                        log_path=tmp_path / f"race-{n}.log") for n in range(4)]
    retired = rng.sample(users, 8)
    try:
        for user in retired:  # while the four drain: some of their rows are in flight as they retire
            update_then_retire(user)
            time.sleep(rng.uniform(0, 0.05))
        codes = [drainer.wait(timeout=90) for drainer in drainers]
    finally:
        for drainer in drainers:
            drainer.kill()
    assert set(codes) <= {0, 1}, [drainer.output() for drainer in drainers]
    run_drainers_until_empty([env], tmp_path)
    assert retired_rows(server_clickhouse, retired) == {"user_profile": 0, "external_id": 0}
    figures = assert_every_row_exactly_once(server_clickhouse, LEARNER_TABLES, retired=[user.pk for user in retired])
    report("learners four drainers", seed=SEED, retired=len(retired), **row_figures(figures))
