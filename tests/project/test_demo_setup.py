"""
The standalone project set up the way the README and `make demo` do it, in other processes on
a fresh SQLite file: `migrate` alone must be enough for the drain (its purge timer lives in
the database cache, whose table `migrate` creates) and for the status. Before, `outbox_drain
--once` right after `migrate` died with "no such table: clickhouse_outbox_cache".
"""

import os
import sqlite3
import subprocess
import sys

import pytest

from tests.processes import ROOT

CACHE_TABLE = "clickhouse_outbox_cache"  # outbox_project/settings.py's DJANGO_CACHE_LOCATION default


@pytest.fixture
def demo(tmp_path):
    """Runs `manage.py ARGS` as an operator would, on an empty database and ClickHouse in tmp_path."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("CLICKHOUSE_", "DJANGO_CACHE_"))}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'outbox.sqlite3'}",
        OUTBOX_DEMO_DIR=str(tmp_path),
        CLICKHOUSE_URL=f"chdb://{tmp_path / 'chdb'}",
        OLX_COURSES_DIR=str(tmp_path / "courses"),
    )

    def manage(*args):
        done = subprocess.run(  # noqa: S603 (our own manage.py)
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
        )
        for stream in (done.stdout, done.stderr):
            assert "Traceback" not in stream, stream
        return done

    manage.database = tmp_path / "outbox.sqlite3"
    return manage


def test_migrate_alone_is_enough_to_drain_and_check_status(demo):
    assert not demo.database.exists()
    migrated = demo("migrate", "-v", "0")
    assert migrated.returncode == 0, migrated.stderr
    with sqlite3.connect(demo.database) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert CACHE_TABLE in tables

    drained = demo("outbox_drain", "--once")
    assert drained.returncode == 0, drained.stdout + drained.stderr
    assert "Drained: 0 batches (0 rows) sent." in drained.stdout
    assert "no such table" not in drained.stderr

    status = demo("outbox_status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "healthy (exit status 0)" in status.stdout
