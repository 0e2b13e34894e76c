"""
The periodic verification and what it tells `outbox_status`: off by default; when asked,
a beat entry, and a real `celery beat` sending the task to a real `celery worker` that
finds a difference; `outbox_status` then exits 1 until a newer snapshot repairs it.
"""

import io
import json
import time
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command

from clickhouse_outbox.models import DumpJob, Verdict
from clickhouse_outbox.outbox.drain import drain_until_empty
from clickhouse_outbox.schedule import VERIFY_BEAT_ENTRY, VERIFY_TASK, install_verify_entry
from clickhouse_outbox.tasks import verify_outbox
from tests.processes import celery_processes, project_env
from tests.reconcile.helpers import delete_rows, publish_courses, verify

DEADLINE_SECS = 60


def status():
    """outbox_status --json: (exit status, report)."""
    out = io.StringIO()
    try:
        call_command("outbox_status", "--json", stdout=out)
        code = 0
    except CommandError as exc:
        code = exc.returncode
    return code, json.loads(out.getvalue())


@pytest.mark.parametrize(("interval", "scheduled"), [(None, False), (0, False), ("600", True), (600, True),
                                                     ("often", False)])
def test_the_beat_entry_only_when_an_interval_is_set(interval, scheduled):
    settings = SimpleNamespace(CELERYBEAT_SCHEDULE={"other": {}})
    if interval is not None:
        settings.CLICKHOUSE_OUTBOX_VERIFY_INTERVAL_SECS = interval
    install_verify_entry(settings)
    assert (VERIFY_BEAT_ENTRY in settings.CELERYBEAT_SCHEDULE) is scheduled
    assert "other" in settings.CELERYBEAT_SCHEDULE
    if scheduled:
        entry = settings.CELERYBEAT_SCHEDULE[VERIFY_BEAT_ENTRY]
        assert (entry["task"], entry["schedule"], entry["options"]["expire_seconds"]) == (VERIFY_TASK, 600.0, 600)


def courses_only(settings):
    """Only the course producer on (the stand-in platform's learners and tags would be verified too)."""
    for name in ("COURSE_ENROLLMENT", "USER_PROFILE", "EXTERNAL_ID", "TAXONOMY", "TAG", "OBJECT_TAG"):
        setattr(settings, f"CLICKHOUSE_OUTBOX_{name}_ENABLED", False)


@pytest.mark.django_db
def test_a_difference_makes_outbox_status_exit_1_until_repaired(olx_source, clickhouse, tmp_path, settings):
    courses_only(settings)
    keys = publish_courses(olx_source, tmp_path / "exports", 2)
    assert status()[0] == 0
    delete_rows(clickhouse, "course_blocks", f"course_key = '{keys[0]}'")

    verify_outbox()  # what the beat entry runs (the task itself, here in this process)

    job = DumpJob.objects.get(origin="periodic")
    assert (job.action, job.status, job.repair_job) == (DumpJob.Action.VERIFY, DumpJob.Status.DONE, None)
    code, report = status()
    assert code == 1
    assert report["differing"] == {"missing rows": 1}
    assert any("1 subject differs in ClickHouse from what was delivered (missing rows: 1; last verified" in problem
               and "outbox_verify --repair" in problem for problem in report["problems"]), report["problems"]
    assert report["last_verified_at"]

    verify("--producer", "course_structure", "--repair")  # a newer snapshot of it: no longer differing
    assert status()[1]["differing"] == {}
    assert drain_until_empty(timeout=60)[0].ok
    assert status()[0] == 0 and verify("--producer", "course_structure")[0] == 0


@pytest.mark.django_db
def test_no_second_periodic_verification_while_a_job_runs(olx_source, clickhouse, tmp_path):
    from clickhouse_outbox.dumps.jobs import start_job

    start_job(DumpJob.Scope.ALL, origin="outbox_requeue")
    assert verify_outbox() == {"started": False}
    assert not DumpJob.objects.filter(origin="periodic").exists()


@pytest.mark.slow
@pytest.mark.clickhouse_server
@pytest.mark.django_db(transaction=True)
def test_beat_sends_the_periodic_verification_to_a_worker(server_clickhouse, clickhouse_server_config, olx_source,
                                                          olx_dir, tmp_path, celery_broker):
    from django_celery_beat.models import PeriodicTask

    keys = publish_courses(olx_source, tmp_path / "exports", 2)
    delete_rows(server_clickhouse, "course_blocks", f"course_key = '{keys[1]}' AND `order` = 2")
    config = dict(clickhouse_server_config, database=server_clickhouse.database)
    env = project_env(config, OLX_COURSES_DIR=olx_dir, OUTBOX_DRAIN_INTERVAL_SECS=1, OUTBOX_VERIFY_INTERVAL_SECS=1,
                      CELERY_BROKER_URL=celery_broker, OUTBOX_LOG_LEVEL="INFO")
    with celery_processes(tmp_path, env) as processes:
        processes.start_worker()
        processes.start_beat()
        entry = PeriodicTask.objects.get(name=VERIFY_BEAT_ENTRY)
        assert (entry.task, entry.interval.every, entry.interval.period) == (VERIFY_TASK, 1, "seconds")
        deadline = time.monotonic() + DEADLINE_SECS
        while not Verdict.objects.filter(job__origin="periodic", job__status=DumpJob.Status.DONE).exists():
            processes.check_alive()
            assert time.monotonic() < deadline, processes.log("worker")[-3000:]
            time.sleep(0.3)
        processes.wait_for_log("worker", f"Task {VERIFY_TASK}[", timeout=10)

    verdicts = dict(Verdict.objects.filter(job__origin="periodic", producer="course_structure")
                    .values_list("subject", "verdict"))
    assert verdicts == {keys[0]: Verdict.Kind.OK, keys[1]: Verdict.Kind.MISSING}
    code, report = status()
    assert code == 1 and report["differing"]["missing rows"] == 1
