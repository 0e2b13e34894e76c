"""
A clean start (issue 19, goal 4): on a site just migrated (openedx-core's migrations made the
Languages taxonomy up to 0.x, Ulmo's; later releases make none), with a taxonomy and learners made
before the plugin was installed, `outbox_backfill` (the
Tutor init task's last step, and the README's) sends what existed once, and `outbox_verify`
exits 0 with nothing done by hand; run again, it starts nothing.
"""

import io

import pytest
from django.core.management import CommandError, call_command

from clickhouse_outbox.dumps.initial import never_dumped
from clickhouse_outbox.models import DumpJob, Snapshot
from clickhouse_outbox.outbox.drain import drain
from tests.learners import enroll, give_external_id, make_learner, tag_object, taxonomy_with_tags
from tests.reconcile.helpers import verify

pytestmark = pytest.mark.django_db


@pytest.mark.clickhouse_server
def test_a_new_site_verifies_clean_after_the_first_backfill(server_clickhouse, olx_source):
    _, tags = taxonomy_with_tags("Levels", ("Intro",))
    tag_object("course-v1:edX+DemoX+Demo_Course", tags[0])
    for index in range(3):
        user = make_learner(f"early{index}")
        give_external_id(user)
        enroll(user)
    Snapshot.objects.all().delete()  # registered before the plugin was installed: the outbox saw nothing
    code, report = verify()
    assert code == 1, report  # never sent: the taxonomies, their tags, the learners

    out = io.StringIO()
    call_command("outbox_backfill", stdout=out, stderr=io.StringIO())
    assert "done" in out.getvalue()
    assert never_dumped() == []
    while drain().batches_sent:
        pass
    code, report = verify()
    assert code == 0, report

    jobs = DumpJob.objects.count()
    out = io.StringIO()
    call_command("outbox_backfill", stdout=out)
    assert "Nothing to backfill" in out.getvalue()
    assert DumpJob.objects.count() == jobs  # no new dump


@pytest.mark.clickhouse_server
@pytest.mark.django_db(transaction=True)  # --drain sends from a thread with its own connection
def test_with_drain_one_command_leaves_a_new_site_verifying_clean(server_clickhouse, olx_source):
    _, tags = taxonomy_with_tags("Levels", ("Intro",))
    tag_object("course-v1:edX+DemoX+Demo_Course", tags[0])
    for index in range(3):
        enroll(make_learner(f"early{index}"))
    Snapshot.objects.all().delete()

    out = io.StringIO()
    call_command("outbox_backfill", "--drain", "--timeout", "60", stdout=out, stderr=io.StringIO())

    assert "Drained: " in out.getvalue() and never_dumped() == []
    code, report = verify()
    assert code == 0, report  # no drain run by the test: the command sent every row


def test_queue_and_drain_are_one_or_the_other(olx_source):
    with pytest.raises(CommandError, match="choose one"):
        call_command("outbox_backfill", "--queue", "--drain", stdout=io.StringIO())
    assert not DumpJob.objects.exists()


def test_queued_for_celery_when_asked(olx_source):
    out = io.StringIO()
    call_command("outbox_backfill", "--queue", stdout=out)
    job = DumpJob.objects.get()
    assert job.status == DumpJob.Status.QUEUED and job.origin == "outbox_backfill"
    assert set(job.producer_names) == set(never_dumped())
    call_command("outbox_backfill", "--queue", stdout=io.StringIO())  # under way: joined, not started twice
    assert DumpJob.objects.count() == 1
