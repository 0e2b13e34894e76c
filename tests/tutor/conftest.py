"""
The real Tutor and Aspects plugin, from PyPI, in a virtualenv of their own (.tutor-venv),
and fresh Tutor environments rendered by `tutor config save`: no Docker is involved.
"""

import contextlib
import fcntl
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".tutor-venv"
REQUIREMENTS = ROOT / "requirements" / "tutor.txt"
#: What the venv was built from; a different stamp (new pins, new setup.py) rebuilds it.
STAMP = VENV / ".installed"
LOCK = ROOT / ".tutor-venv.lock"


def wanted_stamp():
    digest = hashlib.sha256()
    for path in (REQUIREMENTS, ROOT / "setup.py"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def run(command, **kwargs):
    """Run a command; on failure the error shows its output (never a secret: none is passed)."""
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, command))} exited {result.returncode}\n"
            f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
        )
    return result


@contextlib.contextmanager
def venv_lock():
    """One builder at a time: several pytest runs may start on one checkout."""
    with open(LOCK, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_venv():
    """Create .tutor-venv with the pinned Tutor requirements and this project (editable, no deps)."""
    stamp = wanted_stamp()
    if STAMP.exists() and STAMP.read_text() == stamp and (VENV / "bin" / "tutor").exists():
        return
    STAMP.unlink(missing_ok=True)
    if not (VENV / "bin" / "python").exists():
        run([sys.executable, "-m", "venv", str(VENV)])
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "-q", "--disable-pip-version-check"]
    run([*pip, "install", "-r", str(REQUIREMENTS)])
    # The Tutor plugin imports neither Django nor the rest of the plugin's requirements.
    run([*pip, "install", "--no-deps", "-e", str(ROOT)])
    STAMP.write_text(stamp)


@pytest.fixture(scope="session")
def tutor_venv():
    """The bin folder of .tutor-venv (python, tutor), built or brought up to date once."""
    with venv_lock():
        build_venv()
    return VENV / "bin"


@pytest.fixture
def tutor(tutor_venv, tmp_path):
    """Run `tutor ARGS...` on this test's own TUTOR_ROOT; returns the completed process."""
    env = dict(os.environ)
    env.update(
        TUTOR_ROOT=str(tmp_path / "tutor-root"),
        TUTOR_PLUGINS_ROOT=str(tmp_path / "tutor-plugins"),
        # Tutor 22's hooks cache and the like go under the home folder: keep them per test.
        HOME=str(tmp_path / "home"),
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)

    def tutor(*args, check=True):
        command = [str(tutor_venv / "tutor"), *args]
        if check:
            return run(command, env=env, cwd=tmp_path)
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)

    tutor.venv = tutor_venv
    tutor.root = tmp_path / "tutor-root"
    tutor.env = env
    return tutor


@pytest.fixture
def render_tutor_env(tutor):
    """
    render_tutor_env(plugins) enables `plugins` in that order on a fresh TUTOR_ROOT, runs
    `tutor config save` and returns the rendered `env` folder.
    """

    def render(plugins, *save_args):
        for plugin in plugins:
            tutor("plugins", "enable", plugin)
        tutor("config", "save", *save_args)
        return tutor.root / "env"

    return render


@pytest.fixture
def aspects_env(render_tutor_env):
    """A fresh TUTOR_ROOT with only Aspects enabled, rendered by `tutor config save` (single server)."""
    return render_tutor_env(["aspects"])


@pytest.fixture
def aspects(aspects_env):
    """Every rendered migration's upgrade(), run in revision order and classified."""
    from tests.tutor.aspects_migrations import read_migrations

    return read_migrations(aspects_env)


@pytest.fixture
def clickhouse_database_name(aspects):
    """The chdb_backend fixture's database: the one the rendered migrations name (event_sink)."""
    return aspects.database
