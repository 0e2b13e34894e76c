"""
The Tutor plugin, with the real `tutor` and `tutor-contrib-aspects` from PyPI: what
`tutor config save` renders, executed as edx-platform would load it. No Docker.
"""

import ast
import json
import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from clickhouse_outbox import __version__, conf
from clickhouse_outbox.schedule import BEAT_ENTRY, SWEEP_BEAT_ENTRY, beat_entry, sweep_entry

from tests.tutor.conftest import ROOT, run

#: Each test runs the real tutor a few times (about 2 s each); the first builds .tutor-venv.
pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
JOBS = ("outbox-requeue-all", "outbox-status")
#: The rendered settings modules, as (service, name): apps/openedx/settings/SERVICE/NAME.py.
SETTINGS_FILES = [(service, name) for service in ("lms", "cms") for name in ("production", "development")]
MARKER = "# clickhouse_outbox (Tutor plugin)"

#: The producers and the peer's models for them.
NON_PII = {"course_structure": "course_overviews", "course_enrollment": "course_enrollment",
           "taxonomy": "taxonomy", "tag": "tag", "object_tag": "object_tag"}
PII = {"user_profile": "user_profile", "external_id": "external_id", "user_retirement": "auth_user"}
#: Aspects' default EVENT_SINK_MODELS_ENABLED, all taken over.
ASPECTS_DEFAULT = NON_PII
#: The drain's interval unless a Tutor setting says otherwise: the package's own default.
DEFAULT_INTERVAL = conf.DEFAULTS["CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS"]
#: The sweep's interval the Tutor plugin sets (tutor/plugin.py SWEEP_INTERVAL_SECS; the package's default is 0).
SWEEP_INTERVAL_SECS = 300


def probe(tutor):
    """Tutor's hooks for this root, rendered: init tasks, our do jobs, Aspects' patches, our config."""
    result = run([str(tutor.venv / "python"), str(HERE / "tutor_hooks.py"), *JOBS], env=tutor.env)
    return json.loads(result.stdout)


def settings_path(env_dir, service, name):
    return env_dir / "apps" / "openedx" / "settings" / service / f"{name}.py"


def rendered_settings(env_dir, service, name):
    """
    Execute the rendered LMS or CMS settings module `name` the way edx-platform imports it, with
    this checkout's package first on the path (the virtualenv's may be another checkout's).
    """
    path = settings_path(env_dir, service, name)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return json.loads(run([sys.executable, str(HERE / "exec_settings.py"), str(path)], env=env).stdout)


def all_settings(env_dir):
    """{(service, name): settings} for the four rendered settings modules."""
    return {(service, name): rendered_settings(env_dir, service, name) for service, name in SETTINGS_FILES}


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


SWITCH = re.compile(r"(EVENT_SINK_CLICKHOUSE|CLICKHOUSE_OUTBOX)_\w+_ENABLED")


def switches(settings):
    """The per-sink and per-producer switches a settings module ends with (not CLICKHOUSE_OUTBOX_ENABLED)."""
    return {key: value for key, value in settings.items() if SWITCH.fullmatch(key)}


def takeover_switches(producers):
    """What taking over `producers` ({producer: peer model}) sets: the peer's sink off, ours on."""
    expected = {}
    for producer, model in producers.items():
        expected[conf.peer_setting_name(model)] = False
        expected[conf.producer_setting_name(producer)] = True
    return expected


def effective(settings):
    """The settings as a deployment sees them: ClickHouse (no password), the switches, the drain's beat entry."""
    return {
        "clickhouse": without_password(settings["EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG"]),
        "pii_models": settings.get("EVENT_SINK_CLICKHOUSE_PII_MODELS"),
        "switches": switches(settings),
        "beat": settings.get("CELERYBEAT_SCHEDULE", {}).get(BEAT_ENTRY),
        "enabled": settings["CLICKHOUSE_OUTBOX_ENABLED"],
    }


@contextmanager
def platform_settings(values):
    """This process's Django settings with the switches of `values` (a rendered module's), and only those."""
    from django.conf import settings
    from django.test import override_settings

    from clickhouse_outbox.outbox import deletes, registry

    names = {"CLICKHOUSE_OUTBOX_ENABLED", "EVENT_SINK_CLICKHOUSE_PII_MODELS",
             conf.producer_setting_name(deletes.RETIREMENT), conf.peer_setting_name(deletes.RETIREMENT_PEER_MODEL)}
    for producer in registry.all_producers():
        names |= {conf.producer_setting_name(producer.name), conf.peer_setting_name(producer.peer_model)}
    with override_settings(**{name: values[name] for name in names if name in values}):
        for name in names - values.keys():
            if hasattr(settings, name):
                delattr(settings, name)
        yield


def producers_on(values):
    """The producers the package turns on with a rendered module's settings (user_retirement: retirements delete)."""
    from clickhouse_outbox.outbox import deletes, registry

    with platform_settings(values):
        on = {producer.name for producer in registry.enabled_producers()}
        if deletes.retirement_enabled():
            on.add(deletes.RETIREMENT)
        peers_on = {model for model in [*NON_PII.values(), *PII.values()] if conf.peer_enabled(model)}
    return on, peers_on


def worker_command(env_dir, service):
    """The SERVICE-worker service's command lines in the rendered production docker-compose file."""
    compose = (env_dir / "local" / "docker-compose.prod.yml").read_text()
    block = re.search(rf"^  {service}-worker:\n(.*?)(?=^  \S|\Z)", compose, re.M | re.S)
    assert block, f"no {service}-worker service"
    return re.findall(r'^\s+- "([^"]*)"$', block.group(1), re.M)


def assert_takeover(env_dir, settings, producers, *, left_alone=()):
    """
    Every settings module (LMS and CMS alike) takes over `producers` ({producer: peer model})
    and nothing else: those switches, the package turning exactly them on and the peer's
    sinks for them off; each named in the rendered comments. `left_alone` are peer models
    whose switch stays unset.
    """
    expected = takeover_switches(producers)
    for key, values in settings.items():
        ours = {name: value for name, value in switches(values).items() if name.startswith("CLICKHOUSE_OUTBOX_")}
        assert ours == {name: value for name, value in expected.items() if name.startswith("CLICKHOUSE_OUTBOX_")}, key
        for name, value in expected.items():
            assert values.get(name) is value, f"{key}: {name}"
        for model in left_alone:
            assert conf.peer_setting_name(model) not in values, f"{key}: {model}'s switch was set"
        on, peers_on = producers_on(values)
        assert on == set(producers), key
        assert not peers_on & set(producers.values()), f"{key}: the peer still writes {peers_on}"
        text = settings_path(env_dir, *key).read_text()
        for producer, model in producers.items():
            assert re.search(rf"^# {producer} on, Aspects' {model} sink off \(.+\)$", text, re.M), (key, producer)


def assert_common_deployment(env_dir, settings, hooks, interval):
    """What the plugin gives in every case: image, the plugin's settings, the CMS beat only, do jobs."""
    dockerfile = (env_dir / "build" / "openedx" / "Dockerfile").read_text()
    assert f'pip install "clickhouse-outbox=={__version__}"' in dockerfile
    for (service, name), values in settings.items():
        assert values["CLICKHOUSE_OUTBOX_ENABLED"] is True, f"{service} {name}: the plugin's own settings did not run"
        schedule = values.get("CELERYBEAT_SCHEDULE", {})
        if service == "cms":
            assert values["CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS"] == interval, name
            assert schedule[BEAT_ENTRY] == beat_entry(interval), name
            # The sweep, off in the package, on here (rows written without a signal reach ClickHouse).
            assert schedule[SWEEP_BEAT_ENTRY] == sweep_entry(SWEEP_INTERVAL_SECS), name
        else:
            assert BEAT_ENTRY not in schedule, f"lms {name}: the LMS has the drain's beat entry"
            assert SWEEP_BEAT_ENTRY not in schedule, f"lms {name}: the LMS has the sweep's beat entry"
    command = worker_command(env_dir, "cms")
    assert command[:3] == ["celery", "--app=cms.celery", "worker"]
    assert "--beat" in command
    command = worker_command(env_dir, "lms")
    assert command[:3] == ["celery", "--app=lms.celery", "worker"]
    assert not [arg for arg in command if arg.startswith(("--beat", "--schedule"))], command
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


def other_root(tutor, name):
    """`tutor` on another TUTOR_ROOT (and home) of this test: a second deployment."""
    base = tutor.root.parent / name
    env = dict(tutor.env, TUTOR_ROOT=str(base / "tutor-root"), HOME=str(base / "home"))

    def other(*args):
        return run([str(tutor.venv / "tutor"), *args], env=env, cwd=tutor.root.parent)

    other.root = base / "tutor-root"
    return other


def aspects_settings(hooks):
    return "\n".join(hooks["aspects_patches"]["openedx-common-settings"])


@pytest.mark.django_db
@pytest.mark.parametrize("plugins", [["aspects", "clickhouse_outbox"], ["clickhouse_outbox", "aspects"]],
                         ids=["aspects-first", "ours-first"])
def test_with_aspects(render_tutor_env, tutor, plugins):
    env_dir = render_tutor_env(plugins)
    hooks = probe(tutor)
    settings = all_settings(env_dir)

    aspects = aspects_settings(hooks)
    aspects_config = assigned_literal(aspects, "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG")
    # Aspects turns its sinks on in openedx-common-settings; ours come after, in both services.
    for model in ASPECTS_DEFAULT.values():
        assert assigned_literal(aspects, conf.peer_setting_name(model)) is True, model
    for key in SETTINGS_FILES:
        text = settings_path(env_dir, *key).read_text()
        assert text.count(MARKER) == 1, key
        assert text.index("EVENT_SINK_CLICKHOUSE_COURSE_OVERVIEWS_ENABLED = True") < text.index(MARKER), key
    for key, values in settings.items():
        config = values["EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG"]
        assert without_password(config) == without_password(aspects_config), key
        assert config["password"] == aspects_config["password"], f"{key}: not Aspects' ClickHouse password"
        assert values["EVENT_SINK_CLICKHOUSE_PII_MODELS"] == ["user_profile", "external_id", "auth_user"], key

    # ASPECTS_ENABLE_PII is off: the PII sinks and producers are left alone, and said to be.
    assert_takeover(env_dir, settings, ASPECTS_DEFAULT, left_alone=PII.values())
    for key in SETTINGS_FILES:
        text = settings_path(env_dir, *key).read_text()
        assert re.search(r"^# Not taken over, ASPECTS_ENABLE_PII being off: Aspects' user_profile, external_id, "
                         r"auth_user sinks .*user_retirement unset\.$", text, re.M), key

    assert_common_deployment(env_dir, settings, hooks, interval=DEFAULT_INTERVAL)
    assert our_init_task(hooks) == [
        "./manage.py cms migrate clickhouse_outbox",
        "./manage.py cms clickhouse_outbox_schema --check",
        "./manage.py cms outbox_backfill --queue",
    ]
    aspects_services = [task["service"] for task in hooks["init_tasks"]]
    assert {"clickhouse", "aspects"} <= set(aspects_services), "Aspects' init tasks are missing"


def test_plugin_order_gives_the_same_settings(tutor):
    """Enabling Aspects first or last makes no difference to any of the four settings modules."""
    effective_settings = []
    for order, plugins in (("aspects-first", ["aspects", "clickhouse_outbox"]),
                           ("ours-first", ["clickhouse_outbox", "aspects"])):
        deployment = other_root(tutor, order)
        for plugin in plugins:
            deployment("plugins", "enable", plugin)
        deployment("config", "save", "--set", "ASPECTS_ENABLE_PII=true")
        settings = all_settings(deployment.root / "env")
        effective_settings.append({key: effective(values) for key, values in settings.items()})
    assert effective_settings[0] == effective_settings[1]
    lms, cms = effective_settings[0][("lms", "production")], effective_settings[0][("cms", "production")]
    # The LMS and the CMS turn the same producers on (the CMS's schema command checks their tables).
    assert lms["switches"] == cms["switches"]
    assert lms["clickhouse"] == cms["clickhouse"]


@pytest.mark.django_db
def test_with_aspects_pii(render_tutor_env, tutor):
    """`tutor config save --set ASPECTS_ENABLE_PII=true`: the PII sinks are taken over too, retirements with them."""
    env_dir = render_tutor_env(["aspects", "clickhouse_outbox"])
    tutor("config", "save", "--set", "ASPECTS_ENABLE_PII=true")
    hooks = probe(tutor)
    aspects = aspects_settings(hooks)
    for model in PII.values():
        assert assigned_literal(aspects, conf.peer_setting_name(model)) is True, model
    settings = all_settings(env_dir)
    assert_takeover(env_dir, settings, {**ASPECTS_DEFAULT, **PII})
    for key in SETTINGS_FILES:
        assert "ASPECTS_ENABLE_PII being off" not in settings_path(env_dir, *key).read_text(), key
    assert_common_deployment(env_dir, settings, hooks, interval=DEFAULT_INTERVAL)

    # Back off: left alone again; CLICKHOUSE_OUTBOX_PRODUCERS cannot turn a PII producer on meanwhile.
    tutor("config", "save", "--set", "ASPECTS_ENABLE_PII=false",
          "--set", "CLICKHOUSE_OUTBOX_PRODUCERS=[course_structure, user_profile]")
    settings = all_settings(env_dir)
    assert_takeover(env_dir, settings, ASPECTS_DEFAULT, left_alone=PII.values())
    text = settings_path(env_dir, "lms", "production").read_text()
    assert re.search(r"^# Not turned on, ASPECTS_ENABLE_PII being off: user_profile \(CLICKHOUSE_OUTBOX_PRODUCERS\)\.$",
                     text, re.M)


@pytest.mark.django_db
def test_with_aspects_sinks_chosen(render_tutor_env, tutor):
    """Only the sinks Aspects turns on are taken over, plus CLICKHOUSE_OUTBOX_PRODUCERS; a sink with no producer stays on."""
    env_dir = render_tutor_env(["aspects", "clickhouse_outbox"],
                               "--set", "EVENT_SINK_MODELS_ENABLED=[course_enrollment, course_unknown]",
                               "--set", "CLICKHOUSE_OUTBOX_PRODUCERS=[course_structure, tag]")
    settings = all_settings(env_dir)
    taken = {"course_structure": "course_overviews", "course_enrollment": "course_enrollment", "tag": "tag"}
    assert_takeover(env_dir, settings, taken, left_alone=["taxonomy", "object_tag", *PII.values()])
    for key, values in settings.items():
        assert values["EVENT_SINK_CLICKHOUSE_COURSE_UNKNOWN_ENABLED"] is True, key
        text = settings_path(env_dir, *key).read_text()
        assert re.search(r"^# Not taken over: Aspects' course_unknown sink .*no producer", text, re.M), key


@pytest.mark.django_db
def test_without_aspects(render_tutor_env, tutor):
    env_dir = render_tutor_env(["clickhouse_outbox"])
    hooks = probe(tutor)
    ours = hooks["config"]
    assert ours["CLICKHOUSE_OUTBOX_PRODUCERS"] == ["course_structure"]
    # The Tutor settings' defaults are the package's (settings/table.py).
    assert ours["CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS"] == conf.DEFAULTS["CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS"]
    for key in ("url", "username", "database", "timeout_secs"):
        assert ours[f"CLICKHOUSE_OUTBOX_CLICKHOUSE_{key.upper()}"] == conf.DEFAULT_BACKEND_CONFIG[key], key
    password = ours["CLICKHOUSE_OUTBOX_CLICKHOUSE_PASSWORD"]
    assert re.fullmatch(r"[A-Za-z0-9]{24}", password), "not a generated password"
    assert f"CLICKHOUSE_OUTBOX_CLICKHOUSE_PASSWORD: {password}" in (tutor.root / "config.yml").read_text()
    expected = {
        "url": "http://clickhouse:8123",
        "username": "ch_cms",
        "database": "event_sink",
        "timeout_secs": 5,
    }
    settings = all_settings(env_dir)
    # The LMS queues rows too: it gets the connection as well.
    for key, values in settings.items():
        config = values["EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG"]
        assert without_password(config) == expected, key
        assert config["password"] == password, f"{key}: not the password kept in config.yml"
        assert switches(values) == takeover_switches({"course_structure": "course_overviews"}), key
    assert_takeover(env_dir, settings, {"course_structure": "course_overviews"})

    assert_common_deployment(env_dir, settings, hooks, interval=DEFAULT_INTERVAL)
    assert our_init_task(hooks) == [
        "./manage.py cms migrate clickhouse_outbox",
        "./manage.py cms clickhouse_outbox_schema --create",
        "./manage.py cms outbox_backfill --queue",
    ]
    assert not any(task["service"] in ("clickhouse", "aspects") for task in hooks["init_tasks"])

    # Tutor settings change the drain's interval and the producers; the password stays the one in config.yml.
    tutor("config", "save", "--set", "CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS=15",
          "--set", "CLICKHOUSE_OUTBOX_CLICKHOUSE_URL=https://clickhouse.example.com:8443",
          "--set", "CLICKHOUSE_OUTBOX_PRODUCERS=course_structure,course_enrollment,user_profile")
    assert probe(tutor)["config"]["CLICKHOUSE_OUTBOX_CLICKHOUSE_PASSWORD"] == password
    settings = all_settings(env_dir)
    assert_common_deployment(env_dir, settings, hooks, interval=15)
    # A producer of personal data brings retirements with it.
    taken = {"course_structure": "course_overviews", "course_enrollment": "course_enrollment",
             "user_profile": "user_profile", "user_retirement": "auth_user"}
    assert_takeover(env_dir, settings, taken)
    for values in settings.values():
        assert values["EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG"]["url"] == "https://clickhouse.example.com:8443"
        assert values["EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG"]["password"] == password


def test_unknown_producer_is_refused(render_tutor_env, tutor):
    render_tutor_env(["clickhouse_outbox"])
    result = tutor("config", "save", "--set", "CLICKHOUSE_OUTBOX_PRODUCERS=[course_structure, course_grades]",
                   check=False)
    assert result.returncode != 0
    assert "CLICKHOUSE_OUTBOX_PRODUCERS: no producer named 'course_grades'" in result.stdout + result.stderr


def test_producers_known_to_the_tutor_plugin(tutor_venv):
    """The Tutor plugin's producer names and peer models (it cannot import the package) are the package's."""
    from clickhouse_outbox.outbox import deletes, registry

    code = ("import json\nfrom clickhouse_outbox.tutor import plugin\n"
            "print(json.dumps({'peers': plugin.PEER_MODELS, 'pii': plugin.PII_PRODUCERS}))")
    result = json.loads(run([str(tutor_venv / "python"), "-c", code]).stdout)
    package = {producer.name: producer.peer_model for producer in registry.all_producers()}
    package[deletes.RETIREMENT] = deletes.RETIREMENT_PEER_MODEL
    assert result["peers"] == package
    assert sorted(result["pii"]) == sorted(producer.name for producer in deletes.pii_producers())
    assert {**NON_PII, **PII} == package


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
