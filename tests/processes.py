"""
Running the standalone project in other processes (drainers, celery) against the test
database and a test ClickHouse, as an operator would run them.
"""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def test_database_url():
    """A DATABASE_URL for the test database this pytest run created, so other processes share it."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    scheme = {"mysql": "mysql", "postgresql": "postgres"}[connection.vendor]
    user = quote(settings.get("USER") or "")
    password = f":{quote(settings['PASSWORD'])}" if settings.get("PASSWORD") else ""
    port = f":{settings['PORT']}" if settings.get("PORT") else ""
    return f"{scheme}://{user}{password}@{settings.get('HOST') or '127.0.0.1'}{port}/{settings['NAME']}"


def project_env(clickhouse_config, **extra):
    """Environment for `manage.py` / celery of the standalone project, pointing at the test parts."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLICKHOUSE_OUTBOX_")}
    env.update(
        DATABASE_URL=test_database_url(),
        CLICKHOUSE_URL=clickhouse_config["url"],
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
