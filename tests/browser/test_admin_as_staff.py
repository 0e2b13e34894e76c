"""
The admin as staff use it, in a real browser against a live server: a course whose rows
the real ClickHouse test server refused (wrong password) is found on the course view,
retried after the setting is fixed and delivered; a full dump started from the admin runs
in a real celery worker and its page follows it to the end; a view-only staff user sees
no action and a forged POST changes nothing.

The drain runs in this process (the live server's settings are this process's settings,
so fixing the password here fixes it for the next drain); the dump runs in the worker.
"""

import json
import os

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.core.management import call_command
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from clickhouse_outbox.models import Batch, CourseDelivery, DumpJob, DumpJobItem, Snapshot
from clickhouse_outbox.outbox.drain import drain
from clickhouse_outbox.sources.olx import SAMPLE_COURSE_DIR
from clickhouse_outbox.testing.generator import write_course_export
from tests.dumps.helpers import wait_until
from tests.processes import celery_processes, project_env

SAMPLE_KEY = "course-v1:OpenedX+DemoX+2026_T1"
COURSES_VIEW = "/admin/clickhouse_outbox/coursedelivery/"
PASSWORD = "staff-test-password"  # noqa: S105 (a throw-away test user)
WAIT = 60

pytestmark = [pytest.mark.slow, pytest.mark.clickhouse_server, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker(celery_broker, olx_dir, clickhouse_server_config, server_clickhouse, tmp_path):
    config = dict(clickhouse_server_config, database=server_clickhouse.database)
    env = project_env(config, OLX_COURSES_DIR=olx_dir, CELERY_BROKER_URL=celery_broker,
                      CLICKHOUSE_OUTBOX_DUMP_CHUNK_COURSES=3, OUTBOX_LOG_LEVEL="INFO")
    with celery_processes(tmp_path, env) as processes:
        processes.start_worker()
        yield processes


@pytest.fixture
def staff_users(django_user_model):
    admin = django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    viewer = django_user_model.objects.create_user("viewer", "viewer@example.com", PASSWORD, is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(
        content_type__app_label="clickhouse_outbox", codename__startswith="view_"
    ))
    return admin, viewer


def log_in(browser, live_server, username):
    browser.delete_all_cookies()
    browser.get(f"{live_server.url}/admin/login/?next={COURSES_VIEW}")
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, WAIT).until(ec.presence_of_element_located((By.ID, "outbox-summary")))
    if browser.find_elements(By.CSS_SELECTOR, "#nav-sidebar[aria-expanded=true]"):
        browser.find_element(By.ID, "toggle-nav-sidebar").click()  # room for the list


def row_of(browser, course_key):
    """The course view's row for `course_key`."""
    for row in browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr"):
        if row.find_element(By.CSS_SELECTOR, "th, td.field-course").text.strip() == course_key:
            return row
    raise AssertionError(f"{course_key} is not on the page: {browser.find_element(By.ID, 'result_list').text}")


def wait_for_text(browser, text, locator=(By.TAG_NAME, "body")):
    WebDriverWait(browser, WAIT).until(ec.text_to_be_present_in_element(locator, text))


def test_staff_find_a_failed_course_retry_it_dump_everything_and_viewers_cannot_act(
    browser, screenshots, live_server, settings, olx_dir, tmp_path, server_clickhouse, staff_users, worker
):
    # Twelve courses published, and a drain with the wrong password: the server refuses it,
    # and with one attempt allowed every batch fails for good.
    exports = [SAMPLE_COURSE_DIR] + [
        write_course_export(tmp_path / f"export{n}", blocks=25, course=f"Browser{n}") for n in range(11)
    ]
    call_command("outbox_load_olx", *map(str, exports), stdout=open(os.devnull, "w"))  # noqa: SIM115
    good = dict(settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG)
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(good, password="not-the-password")
    settings.CLICKHOUSE_OUTBOX_MAX_ATTEMPTS = 1
    drain()
    assert set(Batch.objects.values_list("status", flat=True)) == {Batch.Status.FAILED}

    # Staff with every right find the course among the failed ones, with the reason in words.
    log_in(browser, live_server, "admin")
    summary = browser.find_element(By.ID, "outbox-summary").text
    assert "Failed rows" in summary and "in 3 batches" in summary
    browser.get(f"{live_server.url}{COURSES_VIEW}?state=failed&q=DemoX")
    row = row_of(browser, SAMPLE_KEY)
    assert "Failed" in row.text
    assert "ClickHouse refused the user name, the password or the user's rights." in row.text
    assert "not-the-password" not in browser.page_source
    screenshots("1-course-view-failed")

    # They fix the setting and press "retry now" on that course.
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = good
    row.find_element(By.CSS_SELECTOR, "input.action-select").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("retry_subjects")
    browser.find_element(By.CSS_SELECTOR, "button[name=index]").click()
    wait_for_text(browser, "3 batches will be sent at the next drain", (By.CSS_SELECTOR, ".messagelist"))
    # Back on the list without the "failed" filter, the course now waits for the next drain.
    assert "state=" not in browser.current_url and "q=DemoX" in browser.current_url
    assert "Waiting to retry (next attempt" in row_of(browser, SAMPLE_KEY).text
    screenshots("2-retry-now")
    assert set(Batch.objects.values_list("status", flat=True)) == {Batch.Status.RETRY}
    entry = LogEntry.objects.get(user__username="admin", object_id=str(Snapshot.objects.get(subject=SAMPLE_KEY).pk))
    assert "Retry now: 3 batches made due (1 in this action)" in entry.get_change_message()

    # The next drain sends them: the course is delivered.
    result = drain()
    assert result.batches_sent == 3 and not result.errors
    browser.get(f"{live_server.url}{COURSES_VIEW}?q=DemoX")
    assert "Delivered at" in row_of(browser, SAMPLE_KEY).text
    screenshots("3-course-delivered")

    # A full dump from the course view: the job runs in the celery worker, its page follows it.
    browser.get(f"{live_server.url}{COURSES_VIEW}")
    browser.find_element(By.ID, "dump-all").click()
    wait_for_text(browser, "Dump job")
    job = DumpJob.objects.get()
    assert browser.current_url.endswith(f"/admin/clickhouse_outbox/dumpjob/{job.pk}/change/")
    wait_for_text(browser, "12 of 12 courses (12 queued)", (By.CSS_SELECTOR, ".field-progress"))
    wait_for_text(browser, "Done", (By.CSS_SELECTOR, ".field-status"))
    screenshots("4-dump-job-done")
    job.refresh_from_db()
    assert (job.status, job.active, job.requested_by.username) == (DumpJob.Status.DONE, None, "admin")
    assert job.items.filter(status=DumpJobItem.Status.DONE).count() == 12
    assert Snapshot.objects.filter(reason="dump").count() == 12
    assert "run_dump_job" in worker.log("worker")  # the worker ran it, not the web request
    # The task that finished the job sent the drain task (no beat here): the worker sends the
    # dump's twelve snapshots, one batch per table.
    wait_until(lambda: Batch.objects.filter(status=Batch.Status.SENT, entries__snapshot__reason="dump")
               .distinct().count() == 3, "the dump's rows to be sent", timeout=WAIT, poll=0.1,
               while_alive=worker.check_alive)
    assert not Batch.objects.exclude(status=Batch.Status.SENT).filter(entries__snapshot__reason="dump").exists()
    assert "clickhouse_outbox.tasks.drain_outbox" in worker.log("worker")

    # A view-only staff user sees the courses but no action and no dump button...
    log_in(browser, live_server, "viewer")
    assert browser.find_elements(By.NAME, "action") == []
    assert browser.find_elements(By.ID, "dump-all") == []
    assert "Delivered at" in row_of(browser, SAMPLE_KEY).text
    screenshots("5-view-only-staff")
    # ... and a POST forged from that session (with its CSRF token) changes nothing.
    target = CourseDelivery.objects.get(subject=SAMPLE_KEY, reason="dump")
    snapshots_before = Snapshot.objects.count()
    answers = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const token = document.cookie.split('; ').find(c => c.startsWith('csrftoken=')).split('=')[1];
        const post = (url, fields) => fetch(url, {method: 'POST', credentials: 'same-origin',
            headers: {'X-CSRFToken': token}, body: new URLSearchParams(fields)})
            .then(r => r.text().then(text => ({status: r.status, text})));
        Promise.all([
            post(arguments[0], {action: 'requeue_subjects', _selected_action: arguments[2], index: '0'}),
            post(arguments[0], {action: 'retry_subjects', _selected_action: arguments[2], index: '0'}),
            post(arguments[1], {scope: 'all'}),
        ]).then(results => done(JSON.stringify(results.map(r => ({status: r.status, text: r.text.slice(0, 20000)})))));
        """,
        f"{live_server.url}{COURSES_VIEW}", f"{live_server.url}/admin/clickhouse_outbox/dumpjob/start/", str(target.pk),
    )
    requeue, retry, start = json.loads(answers)
    # The admin offers this user no action, so it runs none: the list comes back unchanged.
    assert requeue["status"] == retry["status"] == 200
    assert "requeued" not in requeue["text"] and "will be sent at the next drain" not in retry["text"]
    assert start["status"] == 403
    assert Snapshot.objects.count() == snapshots_before
    assert DumpJob.objects.count() == 1
    assert not LogEntry.objects.filter(user__username="viewer").exists()
