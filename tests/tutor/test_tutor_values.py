"""
Values from Tutor's config reach the LMS and CMS settings as Python literals and the image's
Dockerfile as one quoted shell word: rendered by the real `tutor config save` and executed as
edx-platform loads the settings, hostile values (quotes, backslashes, line breaks, code,
characters outside ASCII) read back exactly and run nothing.
"""

import json
import subprocess

import pytest

from tests.tutor.conftest import run
from tests.tutor.test_tutor_plugin import SETTINGS_FILES, all_settings

pytestmark = pytest.mark.slow

CONNECTION = ("URL", "USERNAME", "PASSWORD", "DATABASE")


def hostile(marker):
    """Values that broke out of the old "{{ VALUE }}" templates, or would have: each one runs `touch marker`."""
    code = f"import os; os.system('touch {marker}')"
    return {
        "PASSWORD": f'"); {code}  #',
        "USERNAME": f"'''\"\"\"\\\n{code}\n#",
        "URL": f'http://clickhouse:8123/"+__import__("os").system("touch {marker}")+"',
        "DATABASE": "event_sink\\",
    }


def runs_code(marker):
    """Valid Python once pasted between the old template's quotes: it ran `touch marker` and read back as "0"."""
    return {"PASSWORD": f'" + str(__import__("os").system("touch {marker}")) + "'}


def other_values(marker):
    return {
        "PASSWORD": "Zq€7 wÖrd 🔑 пароль\t\n\"'\\",  # no \\r: Tutor renders its values as Jinja templates, which turn it into \\n
        "USERNAME": f"\\x22; {{}}; os.system('touch {marker}')",
        "URL": "http://clickhouse:8123",
        "DATABASE": "événement sink ⚠ \\u0041",  # no U+2028 or U+0085: Tutor's config.yml (PyYAML) loses them
    }


def yaml_string(value):
    """`value` as a YAML double-quoted string (JSON's, with YAML's own line breaks escaped too)."""
    text = json.dumps(value, ensure_ascii=False)
    for char in "\x85\u2028\u2029":
        text = text.replace(char, ascii(char)[1:-1].replace("\\x", "\\u00"))
    return text


def set_args(values):
    """`tutor config save --set` arguments giving each value exactly."""
    args = []
    for key, value in values.items():
        args += ["--set", f"CLICKHOUSE_OUTBOX_CLICKHOUSE_{key}={yaml_string(value)}"]
    return args


@pytest.mark.parametrize("make_values", [runs_code, hostile, other_values], ids=["runs-code", "breaks-out", "characters"])
def test_connection_values_round_trip_and_run_nothing(render_tutor_env, tutor, tmp_path, make_values):
    marker = tmp_path / "code-ran"
    values = make_values(marker)
    env_dir = render_tutor_env(["clickhouse_outbox"], *set_args(values))
    settings = all_settings(env_dir)
    assert not marker.exists(), "a value ran as code"
    for key in SETTINGS_FILES:
        config = settings[key]["EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG"]
        for name, value in values.items():
            assert config[name.lower()] == value, (key, name)
        text = (env_dir / "apps" / "openedx" / "settings" / key[0] / f"{key[1]}.py").read_text()
        assert text.isascii()


def test_the_pip_spec_is_one_shell_word(render_tutor_env, tmp_path):
    marker = tmp_path / "code-ran"
    spec = f'clickhouse-outbox==0.1.0"; touch {marker}; echo "$(touch {marker})`touch {marker}`\\'
    env_dir = render_tutor_env(["clickhouse_outbox"], "--set", f"CLICKHOUSE_OUTBOX_PIP_SPEC={json.dumps(spec)}")
    dockerfile = (env_dir / "build" / "openedx" / "Dockerfile").read_text()
    (line,) = [line for line in dockerfile.splitlines() if line.strip().startswith("pip install")]
    # What sh makes of it: the exact spec, one argument, nothing run.
    echoed = subprocess.run(["sh", "-c", line.replace("pip install", "printf '%s|'", 1)],  # noqa: S603, S607
                            capture_output=True, text=True, check=True).stdout
    assert echoed == f"{spec}|"
    assert not marker.exists()


@pytest.mark.parametrize(("setting", "value", "says"), [
    ("CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS", '__import__("os").system("touch MARKER")',
     "CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS is '__import__"),
    ("CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS", "0", "it must be a number from 1 to 86400"),
    ("CLICKHOUSE_OUTBOX_CLICKHOUSE_PASSWORD", "0123", "must be a string: quote it"),
    ("CLICKHOUSE_OUTBOX_CLICKHOUSE_TIMEOUT_SECS", "2024-01-01", "must be a string, a number"),
    ("CLICKHOUSE_OUTBOX_PIP_SPEC", json.dumps("clickhouse-outbox\nRUN touch MARKER"), "must be one line"),
])
def test_a_value_that_cannot_be_written_stops_tutor_config_save(render_tutor_env, tutor, tmp_path, setting,
                                                                value, says):
    marker = tmp_path / "MARKER"
    render_tutor_env(["clickhouse_outbox"])
    result = tutor("config", "save", "--set", f"{setting}={value.replace('MARKER', str(marker))}", check=False)
    assert result.returncode != 0
    assert says in result.stdout + result.stderr
    assert not marker.exists()


def test_comments_stay_on_one_line(tutor_venv):
    """Aspects' model names reach our comments (the notes on what was not taken over): escaped to one line."""
    code = ("import json\nfrom clickhouse_outbox.tutor import plugin\n"
            "print(json.dumps(plugin.comment('x\\nimport os\\r\\u2028\\x85 ok \\u00e9')))")
    text = json.loads(run([str(tutor_venv / "python"), "-c", code]).stdout)
    assert text == "x\\nimport os\\r\\u2028\\x85 ok \\xe9"
    assert text.isascii() and text.isprintable()
