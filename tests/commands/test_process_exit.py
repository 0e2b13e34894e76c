"""
A command run from the command line freezes the collector's objects at exit
(`OutboxCommand.run_from_argv`): the process ends with the command, and the interpreter's
last collections over the whole heap cost it ~0.15-0.19 s on this machine. A command called
in a process that goes on (call_command: a worker, a test, the admin) leaves the collector
alone. Each case is a real Python process; an atexit hook registered before the command runs
after the command's own (atexit is last in, first out) and reports what it sees.
"""

import os
import subprocess
import sys

import pytest

from tests.processes import ROOT

SCRIPT = """
import atexit, gc, sys
import django
frozen = gc.get_freeze_count()  # Python 3.12 starts with some objects of its own frozen
atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > frozen))
django.setup()
from django.core.management import call_command, execute_from_command_line
if sys.argv[1] == "command-line":
    execute_from_command_line(["manage.py", *sys.argv[2:]])
else:
    try:
        call_command(*sys.argv[2:])
    except Exception as error:
        print(type(error).__name__, error)
"""

#: An unknown course key: the command parses its argument, fails, and exits 1 (no database or ClickHouse).
ARGUMENTS = ["clickhouse_outbox_outline", "not-a-course-key"]


def run(how):
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="outbox_project.settings",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-c", SCRIPT, how, *ARGUMENTS], cwd=ROOT, env=env,  # noqa: S603
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("how", "frozen", "status"), [("command-line", True, 1), ("call_command", False, 0)])
def test_a_command_line_process_freezes_the_heap_at_exit_and_call_command_does_not(how, frozen, status):
    done = run(how)
    assert done.returncode == status, done.stdout + done.stderr
    assert f"frozen at exit: {frozen}" in done.stdout.splitlines(), done.stdout + done.stderr
    assert "not-a-course-key" in done.stdout + done.stderr  # the command ran and refused the key
