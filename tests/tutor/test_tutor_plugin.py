"""
The Tutor plugin, with the real `tutor` and `tutor-contrib-aspects` from PyPI: what
`tutor config save` renders, executed as edx-platform would load it. No Docker.
"""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from clickhouse_outbox import __version__
from clickhouse_outbox.settings.common import BEAT_ENTRY, beat_entry
from tests.tutor.conftest import run

#: Each test runs the real tutor a few times (about 2 s each); the first builds .tutor-venv.
pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
JOBS = ("outbox-requeue-all", "outbox-status")
CMS_SETTINGS = ("production", "development")


def probe(tutor):
    """Tutor's hooks for this root, rendered: init tasks, our do jobs, Aspects' patches, our config."""
    result = run([str(tutor.venv / "python"), str(HERE / "tutor_hooks.py"), *JOBS], env=tutor.env)
    return json.loads(result.stdout)


def cms_settings(env_dir, name):
    """Execute the rendered CMS settings module `name` the way edx-platform imports it."""
    path = env_dir / "apps" / "openedx" / "settings" / "cms" / f"{name}.py"
    return json.loads(run([sys.executable, str(HERE / "exec_settings.py"), str(path)]).stdout)


def assigned_literal(source, name):
    """The literal value `source` (Python code) assigns to `name`, last assignment first."""
    values = [
        ast.literal_eval(node.value)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Assign) and any(getattr(target, "id", None) == name for target in node.targets)
    ]
    assert values, f"{name} is not assigned"
    return values[-1]


def without_password(config):
    return {key: value for key, value in config.items() if key != "password"}


def cms_worker_command(env_dir):
    """The cms-worker service's command lines in the rendered production docker-compose file."""
    compose = (env_dir / "local" / "docker-compose.prod.yml").read_text()
    block = re.search(r"^  cms-worker:\n(.*?)(?=^  \S|\Z)", compose, re.M | re.S)
    assert block, "no cms-worker service"
    return re.findall(r'^\s+- "([^"]*)"$', block.group(1), re.M)


def assert_common_deployment(env_dir, hooks, interval):
    """What the plugin gives in every case: image, course sink off, beat, do jobs."""
    dockerfile = (env_dir / "build" / "openedx" / "Dockerfile").read_text()
    assert f'pip install "clickhouse-outbox=={__version__}"' in dockerfile
    for name in CMS_SETTINGS:
        settings = cms_settings(env_dir, name)
        assert settings["CLICKHOUSE_OUTBOX_ENABLED"] is True, f"{name}: the plugin's own settings did not run"
        assert settings["EVENT_SINK_CLICKHOUSE_COURSE_OVERVIEWS_ENABLED"] is False, name
        assert settings["CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS"] == interval, name
        assert settings["CELERYBEAT_SCHEDULE"][BEAT_ENTRY] == beat_entry(interval), name
    command = cms_worker_command(env_dir)
    assert command[:3] == ["celery", "--app=cms.celery", "worker"]
    assert "--beat" in command
    assert hooks["do_jobs"] == {
        "outbox-requeue-all": [["cms", "./manage.py cms outbox_requeue --all-courses"]],
        "outbox-status": [["cms", "./manage.py cms outbox_status"]],
    }


def our_init_task(hooks):
    """Our init task, checked to come after every other one (Tutor's cms migrate, Aspects' tables)."""
    tasks = hooks["init_tasks"]
    ours = [index for index, task in enumerate(tasks) if task["ours"]]
    assert ours == [len(tasks) - 1], [task["service"] for task in tasks]
    cms_init = [index for index, task in enumerate(tasks) if "./manage.py cms migrate\n" in task["script"]]
    assert cms_init and cms_init[0] < ours[0], "Tutor's cms init (which migrates) is not before ours"
    task = tasks[ours[0]]
    assert task["service"] == "cms"
    return task["script"].strip().splitlines()


@pytest.mark.parametrize("plugins", [["aspects", "clickhouse_outbox"], ["clickhouse_outbox", "aspects"]],
                         ids=["aspects-first", "ours-first"])
def test_with_aspects(render_tutor_env, tutor, plugins):
    env_dir = render_tutor_env(plugins)
    hooks = probe(tutor)

    aspects_settings = "\n".join(hooks["aspects_patches"]["openedx-common-settings"])
    aspects_config = assigned_literal(aspects_settings, "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG")
    # Aspects turns its own course sink on; ours must win.
    assert assigned_literal(aspects_settings, "EVENT_SINK_CLICKHOUSE_COURSE_OVERVIEWS_ENABLED") is True
    for name in CMS_SETTINGS:
        config = cms_settings(env_dir, name)["EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG"]
        assert without_password(config) == without_password(aspects_config), name
        assert config["password"] == aspects_config["password"], f"{name}: not Aspects' ClickHouse password"

    assert_common_deployment(env_dir, hooks, interval=60)
    assert our_init_task(hooks) == [
        "./manage.py cms migrate clickhouse_outbox",
        "./manage.py cms clickhouse_outbox_schema --check",
    ]
    aspects_services = [task["service"] for task in hooks["init_tasks"]]
    assert {"clickhouse", "aspects"} <= set(aspects_services), "Aspects' init tasks are missing"


def test_without_aspects(render_tutor_env, tutor):
    env_dir = render_tutor_env(["clickhouse_outbox"])
    hooks = probe(tutor)
    ours = hooks["config"]
    password = ours["CLICKHOUSE_OUTBOX_CLICKHOUSE_PASSWORD"]
    assert re.fullmatch(r"[A-Za-z0-9]{24}", password), "not a generated password"
    assert f"CLICKHOUSE_OUTBOX_CLICKHOUSE_PASSWORD: {password}" in (tutor.root / "config.yml").read_text()
    expected = {
        "url": "http://clickhouse:8123",
        "username": "ch_cms",
        "database": "event_sink",
        "timeout_secs": 5,
    }
    for name in CMS_SETTINGS:
        config = cms_settings(env_dir, name)["EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG"]
        assert without_password(config) == expected, name
        assert config["password"] == password, f"{name}: not the password kept in config.yml"

    assert_common_deployment(env_dir, hooks, interval=60)
    assert our_init_task(hooks) == [
        "./manage.py cms migrate clickhouse_outbox",
        "./manage.py cms clickhouse_outbox_schema --create",
    ]
    assert not any(task["service"] in ("clickhouse", "aspects") for task in hooks["init_tasks"])

    # A Tutor setting changes the drain's interval; the password stays the one in config.yml.
    tutor("config", "save", "--set", "CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS=15",
          "--set", "CLICKHOUSE_OUTBOX_CLICKHOUSE_URL=https://clickhouse.example.com:8443")
    assert probe(tutor)["config"]["CLICKHOUSE_OUTBOX_CLICKHOUSE_PASSWORD"] == password
    assert_common_deployment(env_dir, hooks, interval=15)
    config = cms_settings(env_dir, "production")["EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG"]
    assert config["url"] == "https://clickhouse.example.com:8443"
    assert config["password"] == password


def test_do_jobs_listed(render_tutor_env, tutor):
    render_tutor_env(["clickhouse_outbox"])
    listing = tutor("local", "do", "--help").stdout
    for job in JOBS:
        assert re.search(rf"^\s+{job}\s", listing, re.M), f"{job} not in `tutor local do --help`"


def test_plugin_needs_neither_django_nor_the_package_requirements(tutor_venv):
    """Tutor's environment has no Django: the plugin module and the package import without it."""
    code = (
        "import sys, importlib.util\n"
        "assert importlib.util.find_spec('django') is None, 'Django is in the Tutor venv'\n"
        "import clickhouse_outbox.tutor.plugin\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('django', 'celery')]\n"
    )
    result = subprocess.run([str(tutor_venv / "python"), "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
