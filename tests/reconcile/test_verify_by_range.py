"""
A whole-table verification of a learner producer walks its table by key range (a cursor,
chunks of keys): no subject is listed as a job item and only the verdicts that are not ok
are kept, the ok subjects counted on the cursor; `outbox_verify`'s totals, exit status and
repair read the same as for a verification subject by subject.
"""

import pytest

from clickhouse_outbox.dumps.jobs import progress_line
from clickhouse_outbox.models import DumpJob, DumpJobItem, Verdict
from clickhouse_outbox.outbox.drain import drain_until_empty
from outbox_project.platform.models import UserProfile
from tests.admin import pages
from tests.admin.helpers import url
from tests.learners import make_learner
from tests.reconcile.helpers import delete_rows, differ, verify

pytestmark = pytest.mark.django_db

LEARNERS = 12


@pytest.fixture
def profiles(clickhouse, settings):
    settings.CLICKHOUSE_OUTBOX_VERIFY_CHUNK = 5  # three chunks of keys
    users = [make_learner(f"learner{n}", f"Learner {n}") for n in range(LEARNERS)]
    assert drain_until_empty(timeout=60)[0].ok
    return list(UserProfile.objects.filter(user__in=users).order_by("pk"))


def test_a_whole_table_verification_keeps_no_verdict_of_an_ok_subject_and_finds_what_differs(profiles, clickhouse,
                                                                                               admin_client):
    changed, lost = profiles[3], profiles[8]
    UserProfile.objects.filter(pk=changed.pk).update(city="Lyon")  # no signal
    delete_rows(clickhouse, "user_profile", f"id = {lost.pk}")

    code, report = verify("--producer", "user_profile")

    assert code == 1
    assert {subject: verdict for subject, (verdict, _) in differ(report).items()} == {
        str(changed.pk): "differs", str(lost.pk): "absent"}
    assert report["counts"]["ok"] == LEARNERS - 2
    assert report["checked"] == LEARNERS
    job = DumpJob.objects.get(pk=report["job"])
    assert not DumpJobItem.objects.filter(job=job).exists()
    assert sorted(Verdict.objects.values_list("subject", flat=True)) == sorted([str(changed.pk), str(lost.pk)])
    (cursor,) = job.cursors.all()
    assert (cursor.chunks, cursor.rows_done, cursor.rows_ok, cursor.rows_to_repair, cursor.finished) == (
        3, LEARNERS, LEARNERS - 2, 2, True)
    assert progress_line(job) == f"{LEARNERS} of {LEARNERS} user profiles ({LEARNERS - 2} ok, 2 to repair)"
    page = admin_client.get(url("dumpjob_change", job.pk))
    assert f"{LEARNERS - 2} ok, 2 to repair" in pages.readonly_field(page, "progress")
    differs = pages.readonly_field(page, "failed_courses")
    assert f"{changed.pk}: content differs from the source: user_profile: city differs" in differs
    assert f"{lost.pk}: not in clickhouse: user_profile: 0 of 1 row" in differs

    code, report = verify("--producer", "user_profile", "--repair")
    repair = DumpJob.objects.get(pk=report["repair_job"])
    assert sorted(repair.items.values_list("subject", flat=True)) == sorted([str(changed.pk), str(lost.pk)])
    assert drain_until_empty(timeout=60)[0].ok
    code, report = verify("--producer", "user_profile")
    assert (code, report["differ"], report["counts"]["ok"]) == (0, [], LEARNERS)
    assert not Verdict.objects.exists()  # the repaired ones' verdicts went with the check that found them ok


def test_named_subjects_are_still_verified_one_by_one(profiles):
    code, report = verify("--producer", "user_profile", str(profiles[0].pk), str(profiles[1].pk))

    assert (code, report["counts"]["ok"]) == (0, 2)
    job = DumpJob.objects.get(pk=report["job"])
    assert job.items.count() == 2 and not job.cursors.exists()
    assert Verdict.objects.filter(verdict=Verdict.Kind.OK).count() == 2


def test_the_learners_view_shows_a_subject_found_ok_by_a_whole_table_verification(profiles, clickhouse, admin_client):
    lost = profiles[8]
    delete_rows(clickhouse, "user_profile", f"id = {lost.pk}")
    listed = "subjectdelivery_changelist"

    def verified(query=""):
        page = admin_client.get(url(listed) + "?producer=user_profile" + query)
        return {row["subject_name"]: row["verified"] for row in pages.rows(page)}

    assert set(verified().values()) == {"-"}  # never verified
    assert len(verified("&verified=none")) == LEARNERS
    code, report = verify("--producer", "user_profile")
    assert code == 1
    job = report["job"]

    shown = verified()
    assert shown.pop(str(lost.pk)).startswith("Not in ClickHouse")
    assert len(shown) == LEARNERS - 1
    assert all(text.startswith("OK, ") and text.endswith(f"(whole-table verification {job})") for text in shown.values())
    assert set(verified("&verified=ok")) == set(shown)  # no verdict kept of them: the job's cursor passed them
    assert verified("&verified=none") == {}
    assert set(verified("&verified=absent")) == {str(lost.pk)}

    newer = make_learner("late", "Late Learner")  # a key the cursor never reached
    assert drain_until_empty(timeout=60)[0].ok
    late = str(UserProfile.objects.get(user=newer).pk)
    assert verified()[late] == "-"
    assert set(verified("&verified=none")) == {late}
