"""
Running the standalone project in other processes (drainers, celery worker and beat)
against the test database and a test ClickHouse, as an operator would run them.
"""

import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import dj_database_url
import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def lock_file(name):
    """The file of the machine-wide lock `name` (in the temp folder, so every checkout's runs share it)."""
    return Path(tempfile.gettempdir()) / f"clickhouse_outbox-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.lock"


CELERY = Path(sys.executable).with_name("celery")
#: The celery tests' broker: a Redis database of their own, emptied before and after each.
BROKER_URL = "redis://127.0.0.1:6379/13"
#: One celery test at a time on the machine: they share that broker database.
LOCK_FILE = lock_file("celery-tests")
VENDOR_SCHEMES = {"sqlite": "sqlite", "mysql": "mysql", "postgresql": "postgres"}


def test_database_url():
    """A DATABASE_URL for the test database this pytest run created, so other processes share it."""
    settings = connection.settings_dict
    name = str(settings["NAME"])
    if connection.vendor == "sqlite":
        url = f"sqlite:///{name}"
    else:
        credentials = quote(settings.get("USER") or "", safe="")
        if settings.get("PASSWORD"):
            credentials += ":" + quote(settings["PASSWORD"], safe="")
        port = f":{settings['PORT']}" if settings.get("PORT") else ""
        url = f"{VENDOR_SCHEMES[connection.vendor]}://{credentials}@{settings.get('HOST') or '127.0.0.1'}{port}/" + quote(
            name, safe=""
        )
    assert dj_database_url.parse(url)["NAME"] == name, url
    return url


def project_env(clickhouse_config, **extra):
    """Environment for `manage.py` / celery of the standalone project, pointing at the test parts."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLICKHOUSE_OUTBOX_")}
    for name in ("DJANGO_CACHE_BACKEND", "DJANGO_CACHE_LOCATION", "OUTBOX_DEMO_DIR"):
        env.pop(name, None)
    env.update(
        DJANGO_SETTINGS_MODULE="outbox_project.settings",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        DATABASE_URL=test_database_url(),
        CLICKHOUSE_URL=clickhouse_config.get("url", ""),
        CLICKHOUSE_URLS=",".join(clickhouse_config.get("urls") or ()),  # replicas to fail over between
        CLICKHOUSE_USERNAME=clickhouse_config.get("username", ""),
        CLICKHOUSE_PASSWORD=clickhouse_config.get("password", ""),
        CLICKHOUSE_DATABASE=clickhouse_config["database"],
        PYTHONUNBUFFERED="1",
    )
    env.update({key: str(value) for key, value in extra.items()})
    return env


def manage(*args, env, **kwargs):
    """Start `manage.py ARGS` in a new process (the caller waits, kills or reads it)."""
    return subprocess.Popen(  # noqa: S603 (our own manage.py)
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs,
    )


@contextlib.contextmanager
def machine_lock(path=LOCK_FILE, holder="another celery test"):
    """
    Hold a machine-wide lock (an exclusive flock of `path`) for the block: by default the celery
    tests' (they share one broker database); concurrent pytest runs (`make test` runs its lanes
    side by side, other checkouts) then take turns. `holder` names who else may hold it.
    """
    with open(path, "w") as handle:
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{holder} holds {path} for more than 10 minutes")
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class CeleryProcesses:
    """Celery worker and beat processes of the standalone project, their logs, and how to stop them."""

    def __init__(self, log_dir, env):
        self.log_dir = Path(log_dir)
        self.env = env
        self.running = {}

    def start(self, name, *args):
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 (closed in stop_all)
        process = subprocess.Popen(  # noqa: S603
            [str(CELERY), "-A", "outbox_project", *args],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.running[name] = (process, log)
        return process

    def start_worker(self, name="worker", timeout=60):
        """A solo-pool worker, ready when this returns."""
        self.start(name, "worker", "-P", "solo", "-l", "info", "-n", f"outbox-{name}-{os.getpid()}@%h",
                   "--without-mingle", "--without-gossip")
        self.wait_for_log(name, " ready.", timeout=timeout)

    def start_beat(self, timeout=60):
        """Beat with django-celery-beat's scheduler, once it has sent the drain task."""
        self.start("beat", "beat", "-S", "django_celery_beat.schedulers:DatabaseScheduler", "-l", "info",
                   f"--pidfile={self.log_dir / 'beat.pid'}")
        self.wait_for_log("beat", "Sending due task clickhouse_outbox.drain", timeout=timeout)

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


@contextlib.contextmanager
def celery_processes(log_dir, env):
    """CeleryProcesses stopped at the end, their logs printed if the block failed."""
    processes = CeleryProcesses(log_dir, env)
    try:
        yield processes
    except BaseException:
        processes.print_logs()
        raise
    finally:
        processes.stop_all()


def free_port(kind=socket.SOCK_STREAM):
    """A free port of the loopback (TCP, or UDP with socket.SOCK_DGRAM) for a server of the test's own."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def system_binary(path, package):
    """
    The path of a Debian program a test runs (`path`, or a name found on PATH); where it is not
    installed, a skip naming `package`, or in CI a failure: a suite that silently skips it proves nothing.
    """
    found = path if os.access(path, os.X_OK) else shutil.which(path)
    if found is not None:
        return found
    reason = f"{path} is not installed (Debian's {package} package: scripts/install-system-packages)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}, and CI must run this test", pytrace=False)
    pytest.skip(reason)
