"""
`manage.py clickhouse_outbox_schema --create | --check [--cluster NAME]`.
"""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.clickhouse.tables import all_tables

from .conftest import backend_config

COMMAND = "clickhouse_outbox_schema"
PROJECT_DIR = Path(__file__).resolve().parents[2]


def run(*args):
    out = io.StringIO()
    call_command(COMMAND, *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def configured(backend, clickhouse_server_config, settings):
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = backend_config(backend, clickhouse_server_config)
    return backend


def test_create_then_check(configured):
    created = run("--create")

    for table in all_tables():
        assert f"Created table {qualified_name(configured.database, table.name)}" in created
    assert "Found table" in run("--create")
    assert run("--check").strip() == "schema OK"


def test_check_lists_every_difference(configured):
    run("--create")
    table = qualified_name(configured.database, "course_blocks")
    configured.command(f"ALTER TABLE {table} DROP COLUMN time_last_dumped")
    configured.command(f"ALTER TABLE {table} MODIFY COLUMN display_name Int64")

    with pytest.raises(CommandError) as caught:
        run("--check")

    message = str(caught.value)
    assert f"{table}: column `time_last_dumped` (String) is missing" in message
    assert f"{table}: column `display_name` is Int64, the contract says String" in message


def test_check_before_create_says_to_create(configured):
    configured.command(f"DROP DATABASE `{configured.database}`")

    with pytest.raises(CommandError) as caught:
        run("--check")

    assert "--create" in str(caught.value)


@pytest.mark.parametrize("args", [(), ("--create", "--check"), ("--cluster", "main")])
def test_exactly_one_action_is_required(args):
    with pytest.raises(CommandError) as caught:
        run(*args)
    assert "--create" in str(caught.value) and "--check" in str(caught.value)


def test_wrong_password_is_a_command_error_naming_the_user(clickhouse_server_config, settings):
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(clickhouse_server_config, password="wrong-Pw-7731")

    with pytest.raises(CommandError) as caught:
        run("--check")

    assert f"credentials of user '{clickhouse_server_config['username']}'" in str(caught.value)
    assert "wrong-Pw-7731" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_bad_url_is_a_command_error(settings):
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = {"url": "mysql://db:3306", "database": "event_sink"}

    with pytest.raises(CommandError) as caught:
        run("--check")

    assert "unsupported scheme ('mysql')" in str(caught.value)


def manage(*args, **env):
    return subprocess.run(
        [sys.executable, "manage.py", COMMAND, *args],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(PROJECT_DIR), **env},
    )


def test_from_the_shell_a_failure_is_one_line_without_traceback_or_password(clickhouse_server_config):
    result = manage(
        "--check",
        CLICKHOUSE_URL=clickhouse_server_config["url"],
        CLICKHOUSE_USERNAME=clickhouse_server_config["username"],
        CLICKHOUSE_PASSWORD="wrong-Pw-7731",
    )

    assert result.returncode == 1
    assert "CommandError: ClickHouse rejected the credentials of user" in result.stderr
    assert "Traceback" not in result.stderr
    assert "wrong-Pw-7731" not in result.stderr + result.stdout


def test_help_explains_the_options():
    result = manage("--help")

    assert result.returncode == 0
    for option in ("--create", "--check", "--enable-dedup", "--cluster NAME", "ReplicatedMergeTree"):
        assert option in result.stdout


def test_check_warns_about_tables_that_cannot_deduplicate(chdb_backend, settings):
    """Aspects creates plain MergeTree tables without a deduplication window: say how to add one."""
    import io

    from django.core.management import call_command

    from clickhouse_outbox.clickhouse.schema import create_table_sql
    from clickhouse_outbox.clickhouse.tables import COURSE_BLOCKS, all_tables

    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = {"url": f"chdb://{chdb_backend.path}", "database": chdb_backend.database}
    info = chdb_backend.server_info()
    for table in all_tables():
        sql = create_table_sql(table, chdb_backend.database, info)
        if table is COURSE_BLOCKS:
            sql = sql.split("\nSETTINGS")[0]  # as Aspects creates it
        chdb_backend.command(sql)
    out, err = io.StringIO(), io.StringIO()
    call_command("clickhouse_outbox_schema", "--check", stdout=out, stderr=err)
    assert "schema OK" in out.getvalue()
    assert "course_blocks` keeps no deduplication window" in err.getvalue()
    assert "to fix: manage.py clickhouse_outbox_schema --enable-dedup" in err.getvalue()
    assert "course_overviews" not in err.getvalue()
