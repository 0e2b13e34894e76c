"""
End to end through real celery processes: a course published in this process is drained
to the real ClickHouse test server by the drain task that a real `celery beat` (with
django-celery-beat's DatabaseScheduler, fed from the project's CELERY_BEAT_SCHEDULE)
sends to a real `celery worker` over Redis. Nothing here calls the task.

The worker and beat open the test database itself (a file next to the main one for
SQLite, `test_<name>` for MariaDB/PostgreSQL), so the test commits for real
(`transaction=True`). The ClickHouse is the server, not chdb: a chdb store can be open
in only one process at a time.
"""

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import dj_database_url
import pytest
import redis
from django.core.cache import cache
from django.db import connection
from openedx_events.content_authoring.data import CourseData
from openedx_events.content_authoring.signals import COURSE_IMPORT_COMPLETED

from clickhouse_outbox.clickhouse.backends.base import qualified_name, quote_string
from clickhouse_outbox.models import Batch, OutboxEntry, Snapshot
from clickhouse_outbox.tasks import LOCK_KEY, TASK_NAME

REPO = Path(__file__).resolve().parent.parent
CELERY = Path(sys.executable).with_name("celery")
#: A Redis database of its own for the broker, flushed before and after.
BROKER_URL = "redis://127.0.0.1:6379/13"
#: Only one run of this test at a time on the machine: the broker database is shared.
LOCK_FILE = Path(tempfile.gettempdir()) / "clickhouse_outbox-test_celery_beat.lock"
DEADLINE_SECS = 60

#: The sample course's rows per table: 1 overview; 46 tree blocks + 6 detached blocks;
#: 45 parent -> child edges (see clickhouse_outbox.sources.olx.SAMPLE_COURSE_DIR).
SAMPLE_ROWS = {"course_overviews": 1, "course_blocks": 52, "course_relationships": 45}

VENDOR_SCHEMES = {"sqlite": "sqlite", "mysql": "mysql", "postgresql": "postgres"}


def subprocess_database_url():
    """A DATABASE_URL under which the project's settings name this test's database."""
    settings_dict = connection.settings_dict
    scheme = VENDOR_SCHEMES[connection.vendor]
    name = str(settings_dict["NAME"])
    if connection.vendor == "sqlite":
        url = f"sqlite:///{name}"
    else:
        credentials = quote(settings_dict["USER"] or "", safe="")
        if settings_dict.get("PASSWORD"):
            credentials += ":" + quote(settings_dict["PASSWORD"], safe="")
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
        url = f"{scheme}://{credentials}@{host}{port}/{quote(name, safe='')}"
    assert dj_database_url.parse(url)["NAME"] == name, url
    return url


@contextlib.contextmanager
def machine_lock():
    with open(LOCK_FILE, "w") as handle:
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another run of this test holds {LOCK_FILE} for more than 10 minutes")
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Processes:
    """The celery processes this test started, their logs, and how to stop them."""

    def __init__(self, log_dir, env):
        self.log_dir = log_dir
        self.env = env
        self.running = {}

    def start(self, name, *args):
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 (closed in stop_all)
        process = subprocess.Popen(  # noqa: S603
            [str(CELERY), "-A", "outbox_project", *args],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.running[name] = (process, log)
        return process

    def log(self, name):
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def check_alive(self):
        for name, (process, _) in self.running.items():
            if process.poll() is not None:
                raise AssertionError(f"celery {name} exited with {process.returncode}:\n{self.log(name)}")

    def wait_for_log(self, name, text, timeout):
        deadline = time.monotonic() + timeout
        while text not in self.log(name):
            self.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"celery {name} did not log {text!r} within {timeout} s")
            time.sleep(0.2)

    def stop_all(self):
        for process, log in self.running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)  # the process group this test started
                    process.wait(timeout=10)
            log.close()

    def print_logs(self):
        for name in self.running:
            print(f"\n===== celery {name} log =====\n{self.log(name)}")


def clickhouse_counts(backend, course_key, dump_id):
    counts = {}
    for table in SAMPLE_ROWS:
        rows = backend.query(
            f"SELECT count() AS n FROM {qualified_name(backend.database, table)} "
            f"WHERE course_key = {quote_string(course_key)} AND toString(dump_id) = {quote_string(dump_id)}"
        )
        counts[table] = int(rows[0]["n"])
    return counts


def outbox_counts(snapshot):
    counts = {}
    for table, row_count in OutboxEntry.objects.filter(snapshot=snapshot).values_list("table", "row_count"):
        counts[table] = counts.get(table, 0) + row_count
    return counts


@pytest.mark.slow
@pytest.mark.clickhouse_server
@pytest.mark.django_db(transaction=True)
def test_beat_and_worker_drain_a_published_course(server_clickhouse, clickhouse_server_config, sample_course_key,
                                                  olx_dir, tmp_path):
    from django_celery_beat.models import PeriodicTask

    database_url = subprocess_database_url()
    broker = redis.Redis.from_url(BROKER_URL)
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="outbox_project.settings",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
        DATABASE_URL=database_url,
        CLICKHOUSE_URL=clickhouse_server_config["url"],
        CLICKHOUSE_USERNAME=clickhouse_server_config["username"],
        CLICKHOUSE_PASSWORD=clickhouse_server_config["password"],
        CLICKHOUSE_DATABASE=server_clickhouse.database,
        OLX_COURSES_DIR=str(olx_dir),
        OUTBOX_DRAIN_INTERVAL_SECS="1",
        CELERY_BROKER_URL=BROKER_URL,
        OUTBOX_LOG_LEVEL="INFO",
    )
    for name in ("DJANGO_CACHE_BACKEND", "DJANGO_CACHE_LOCATION", "OUTBOX_DEMO_DIR"):
        env.pop(name, None)
    processes = Processes(tmp_path, env)
    started = time.monotonic()

    with machine_lock():
        broker.flushdb()
        cache.delete(LOCK_KEY)
        try:
            processes.start("worker", "worker", "-P", "solo", "-l", "info", "-n", f"outbox-test-{os.getpid()}@%h",
                            "--without-mingle", "--without-gossip")
            processes.start("beat", "beat", "-S", "django_celery_beat.schedulers:DatabaseScheduler", "-l", "info",
                            f"--pidfile={tmp_path / 'beat.pid'}")
            processes.wait_for_log("worker", " ready.", timeout=30)
            processes.wait_for_log("beat", "Sending due task clickhouse_outbox.drain", timeout=30)

            # Beat took its entry from the project's settings into the database scheduler.
            entry = PeriodicTask.objects.get(name="clickhouse_outbox.drain")
            assert entry.task == TASK_NAME
            assert (entry.interval.every, entry.interval.period) == (1, "seconds")

            # Publish (an import), committed: this test runs in autocommit mode.
            COURSE_IMPORT_COMPLETED.send_event(course=CourseData(course_key=sample_course_key))
            assert not connection.in_atomic_block
            snapshot = Snapshot.objects.get(subject=str(sample_course_key))
            assert snapshot.status == Snapshot.Status.QUEUED
            expected = outbox_counts(snapshot)
            assert expected == SAMPLE_ROWS

            # Wait for beat -> worker -> drain -> ClickHouse; never call the task here.
            deadline = time.monotonic() + DEADLINE_SECS
            counts = {}
            while time.monotonic() < deadline:
                processes.check_alive()
                counts = clickhouse_counts(server_clickhouse, str(sample_course_key), str(snapshot.dump_id))
                if counts == expected and not Batch.objects.exclude(status=Batch.Status.SENT).exists() and (
                    not OutboxEntry.objects.filter(snapshot=snapshot, status=OutboxEntry.Status.PENDING).exists()
                ):
                    break
                time.sleep(0.5)
            assert counts == expected, f"ClickHouse has {counts} after {DEADLINE_SECS} s, expected {expected}"

            batches = list(Batch.objects.filter(entries__snapshot=snapshot).distinct())
            assert {batch.status for batch in batches} == {Batch.Status.SENT}
            assert all(batch.sent_at is not None and batch.lease_owner is None for batch in batches)
            sent_per_table = {}
            for batch in batches:
                sent_per_table[batch.table] = sent_per_table.get(batch.table, 0) + batch.row_count
            assert sent_per_table == expected
            assert set(OutboxEntry.objects.filter(snapshot=snapshot).values_list("status", flat=True)) == {
                OutboxEntry.Status.BATCHED
            }
            # And it was the worker, running the task beat sent, that did it.
            processes.wait_for_log("worker", "clickhouse_outbox: sent batch", timeout=10)
            worker_log = processes.log("worker")
            assert f"Task {TASK_NAME}[" in worker_log and "received" in worker_log
            assert "succeeded" in worker_log
            print(f"drained through beat + worker in {time.monotonic() - started:.1f} s")
        except BaseException:
            processes.print_logs()
            raise
        finally:
            processes.stop_all()
            broker.flushdb()
            broker.close()
