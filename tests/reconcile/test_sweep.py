"""
The sweep (reconcile.sweep) on the outbox's database: rows written without a signal are
queued once, rows a signal sent are not queued again, a range whose rows did not change is
not compared again, and a sweep cut short goes on where it stopped.
"""

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection

from clickhouse_outbox.models import DumpJob, Snapshot, SweptRange
from clickhouse_outbox.outbox import registry
from clickhouse_outbox.reconcile.sweep import REASON, row_digest, sweep
from outbox_project.platform.models import CourseEnrollment, ExternalId, ExternalIdType, UserProfile
from tests.learners import enroll, make_learner, queued_rows, site_before_install

pytestmark = pytest.mark.django_db

LEARNERS = ("user_profile", "external_id", "course_enrollment")


def swept(*names, **options):
    return {result.producer: result for result in sweep(list(names or LEARNERS), **options)}


def sweep_snapshots(producer):
    return sorted(Snapshot.objects.filter(producer=producer, reason=REASON).values_list("subject", flat=True), key=int)


def bulk_learners(count, prefix="bulk"):
    """Users and profiles made with bulk_create, as a script or the platform's batch code does: no signal."""
    user_model = get_user_model()
    user_model.objects.bulk_create([user_model(username=f"{prefix}{n}", email=f"{prefix}{n}@example.com")
                                    for n in range(count)])
    users = list(user_model.objects.filter(username__startswith=prefix).order_by("id"))
    UserProfile.objects.bulk_create([UserProfile(user=user, name=f"Bulk {user.username}") for user in users])
    return users


def test_rows_written_without_a_signal_are_queued_once():
    signalled = make_learner("ada")
    enroll(signalled)
    users = bulk_learners(3)
    id_type = ExternalIdType.objects.create(name="lti")
    ExternalId.objects.bulk_create([ExternalId(user=user, external_id_type=id_type) for user in users])

    results = swept()

    profiles = [str(pk) for pk in UserProfile.objects.filter(user__in=users).order_by("pk").values_list("pk", flat=True)]
    assert sweep_snapshots("user_profile") == profiles  # not ada's: her signal sent it
    assert len(sweep_snapshots("external_id")) == 3
    assert sweep_snapshots("course_enrollment") == []
    assert (results["user_profile"].queued, results["user_profile"].rows) == (3, 4)
    assert {row["name"] for row in queued_rows("user_profile")} == {"Ada Lovelace", *(f"Bulk bulk{n}" for n in range(3))}
    again = swept()
    assert sum(result.queued for result in again.values()) == 0
    assert sum(result.compared for result in again.values()) == 0  # every range's digest as recorded


def test_a_rows_digest_is_the_one_its_snapshot_keeps():
    profile = UserProfile.objects.select_related("user").get(user=make_learner("ada"))
    snapshot = Snapshot.objects.filter(producer="user_profile", subject=str(profile.pk)).latest("id")
    line = registry.get("user_profile").serialize(profile, dump_id="", time_last_dumped="")
    assert row_digest("user_profile", line) == snapshot.digest


def test_a_profile_changed_by_update_is_queued_with_its_new_content():
    users = [make_learner(f"learner{n}") for n in range(3)]
    swept()
    UserProfile.objects.filter(user=users[1]).update(city="Lyon")

    results = swept()

    profile = UserProfile.objects.get(user=users[1])
    assert sweep_snapshots("user_profile") == [str(profile.pk)]
    assert results["user_profile"].compared == 1
    assert [row["city"] for row in queued_rows("user_profile") if row["id"] == profile.pk] == ["Lyon"]  # the unsent one superseded


def test_an_enrollment_changed_by_raw_sql_is_queued():
    enrollment = enroll(make_learner("grace"))
    swept()
    table = connection.ops.quote_name(CourseEnrollment._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET mode = %s WHERE id = %s", ["verified", enrollment.pk])

    swept()

    assert sweep_snapshots("course_enrollment") == [str(enrollment.pk)]
    assert queued_rows("course_enrollment")[-1]["mode"] == "verified"


def test_an_email_changed_by_update_reaches_the_profile_row():
    user = make_learner("alan")
    swept()
    get_user_model().objects.filter(pk=user.pk).update(email="alan@example.org")

    swept()

    assert queued_rows("user_profile")[-1]["email"] == "alan@example.org"


def test_ranges_on_a_grid_and_a_sweep_cut_short_goes_on_where_it_stopped():
    bulk_learners(250)
    first = swept("user_profile", chunk=100, max_seconds=0)["user_profile"]
    assert not first.complete
    assert first.ranges == 1
    rest = swept("user_profile", chunk=100)["user_profile"]
    assert rest.complete
    assert len(sweep_snapshots("user_profile")) == 250
    ranges = list(SweptRange.objects.filter(producer="user_profile").values_list("key_from", "key_to", "rows"))
    assert all(key_from % 100 == 0 and key_to == key_from + 99 for key_from, key_to, _ in ranges)
    assert sum(rows for _, _, rows in ranges) == 250
    # A new chunk size: the old ranges are forgotten, the rows compared (and found sent). The keys
    # are the database's (MySQL and PostgreSQL do not give back keys of rolled-back tests), so 250
    # of them may cross a multiple of 1,000.
    thousands = set(UserProfile.objects.values_list("pk", flat=True).iterator())
    thousands = {key // 1000 for key in thousands}
    resized = swept("user_profile", chunk=1000)["user_profile"]
    assert (resized.queued, resized.compared) == (0, len(thousands))
    ranges = set(SweptRange.objects.filter(producer="user_profile").values_list("key_from", "key_to"))
    assert ranges == {(n * 1000, n * 1000 + 999) for n in thousands}


def test_a_producer_a_dump_job_is_dumping_is_left_to_it():
    bulk_learners(2)
    DumpJob.objects.create(producers="user_profile", origin="test")

    result = swept("user_profile")["user_profile"]

    assert result.skipped and result.queued == 0
    assert sweep_snapshots("user_profile") == []


def test_the_snapshot_a_signal_took_meanwhile_is_not_overwritten(monkeypatch):
    """A change with its signal between the range's read and the sweep's transaction: the signal's snapshot stays the latest."""
    from clickhouse_outbox.reconcile import sweep as module

    users = bulk_learners(2)
    real = module.queue_differing

    def signal_in_between(producer, rows, digests, before):
        profile = UserProfile.objects.get(user=users[0])
        profile.city = "Nantes"
        profile.save()  # its signal queues a snapshot of the new content
        return real(producer, rows, digests, before)

    monkeypatch.setattr(module, "queue_differing", signal_in_between)
    swept("user_profile")

    profile = UserProfile.objects.get(user=users[0])
    latest = Snapshot.objects.filter(producer="user_profile", subject=str(profile.pk)).latest("id")
    assert latest.reason != REASON
    assert sweep_snapshots("user_profile") == [str(UserProfile.objects.get(user=users[1]).pk)]


def test_outbox_sweep_for_cron_users():
    bulk_learners(2)
    out = io.StringIO()
    call_command("outbox_sweep", "--producer", "user_profile", stdout=out)
    assert out.getvalue().startswith("user_profile: 2 rows in 1 range read, 1 compared row by row, 2 queued (")
    out = io.StringIO()
    call_command("outbox_sweep", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert {row["producer"]: row["queued"] for row in report["producers"]}["user_profile"] == 0
    with pytest.raises(CommandError, match="course_structure: not swept"):
        call_command("outbox_sweep", "--producer", "course_structure")


# -- after a whole-table dump by key range (dumps.ranges) -----------------------------------------

GRID = 100  # CLICKHOUSE_OUTBOX_SWEEP_CHUNK's least


def site_on_several_ranges(count=24):
    """
    Learners made before install whose profiles have keys that cross ranges of the grid (renumbered
    above every key the database has given: the test's keys whatever ran before).
    """
    users = site_before_install(count)
    base = (UserProfile.objects.order_by("-pk").values_list("pk", flat=True).first() // 1000 + 1) * 1000
    keys = [base + offset for offset in (*range(90, 102), *range(195, 203), 350, 460, 461, 599)][:count]
    for profile, key in zip(UserProfile.objects.filter(user__in=users).order_by("pk"), keys, strict=True):
        UserProfile.objects.filter(pk=profile.pk).update(id=key)
    return users


def backfill_by_key_range():
    from clickhouse_outbox.dumps.jobs import start_job
    from clickhouse_outbox.dumps.run import run_job

    job = run_job(start_job(DumpJob.Scope.ALL, origin="test", producers=list(LEARNERS)))
    assert job.status == DumpJob.Status.DONE
    return job


def test_the_first_sweep_after_a_backfill_by_key_range_queues_nothing_and_then_only_what_changed(settings):
    from clickhouse_outbox.models import DumpChunk

    settings.CLICKHOUSE_OUTBOX_SWEEP_CHUNK = GRID
    settings.CLICKHOUSE_OUTBOX_BACKFILL_CHUNK_ROWS = 7
    users = site_on_several_ranges()
    job = backfill_by_key_range()
    chunks = list(DumpChunk.objects.filter(job=job, producer="user_profile").order_by("key_from"))
    assert len(chunks) > 3 and any(chunk.key_to % GRID != GRID - 1 for chunk in chunks)  # ranges begun, ended later
    recorded = SweptRange.objects.filter(producer="user_profile")
    assert sorted(recorded.values_list("key_from", flat=True)) == sorted(
        {key - key % GRID for key in UserProfile.objects.values_list("pk", flat=True)})
    assert not recorded.filter(digest="").exists()  # every range the dump began, it ended

    first = swept()
    assert {name: (result.queued, result.compared) for name, result in first.items()} == {
        name: (0, 0) for name in LEARNERS}
    assert first["user_profile"].rows == UserProfile.objects.count()

    changed = UserProfile.objects.get(user=users[5])
    UserProfile.objects.filter(pk=changed.pk).update(city="Lyon")  # no signal
    again = swept()
    assert sweep_snapshots("user_profile") == [str(changed.pk)]  # that row alone, not its range's others
    assert (again["user_profile"].queued, again["user_profile"].compared) == (1, 1)
    assert [row["city"] for row in queued_rows("user_profile") if row["id"] == changed.pk][-1] == "Lyon"


def test_a_retirement_takes_the_users_row_digests_out_of_the_swept_ranges(settings):
    from clickhouse_outbox.outbox.deletes import retire_user
    from clickhouse_outbox.outbox.swept_ranges import unpack

    settings.CLICKHOUSE_OUTBOX_SWEEP_CHUNK = GRID
    users = site_on_several_ranges()
    backfill_by_key_range()
    retired = users[3]
    keys = {"user_profile": UserProfile.objects.get(user=retired).pk,
            "course_enrollment": CourseEnrollment.objects.filter(user=retired).first().pk,
            "external_id": ExternalId.objects.get(user=retired).pk}

    def recorded():
        return {name: any(key in unpack(swept.row_digests) for swept in SweptRange.objects.filter(producer=name))
                for name, key in keys.items()}

    assert recorded() == dict.fromkeys(LEARNERS, True)
    retire_user(retired.pk)
    assert recorded() == dict.fromkeys(LEARNERS, False)
    assert sum(result.queued for result in swept().values()) == 0  # nothing of theirs queued again
