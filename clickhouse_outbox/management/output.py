"""
What the outbox's commands write: every line, the error a command ends with included,
goes through `text.printable`, so a display name, a subject or ClickHouse's error text
cannot drive the terminal (escape sequences, bidirectional overrides, invisible text). The
commands' own newlines stay; colours come from Django's `style_func`, applied after.
"""

import atexit
import gc

from django.core.management.base import BaseCommand, OutputWrapper

from clickhouse_outbox.text import printable


class PrintableOutput:
    """An OutputWrapper (or any stream) whose `write` escapes what it is given."""

    def __init__(self, out):
        object.__setattr__(self, "_out", out)

    def write(self, msg="", style_func=None, ending=None):
        msg = printable(msg, keep_lines=True)
        if isinstance(self._out, OutputWrapper):
            self._out.write(msg, style_func=style_func, ending=ending)
        else:
            self._out.write(msg)

    def __getattr__(self, name):  # flush, isatty, style_func...
        return getattr(self._out, name)

    def __setattr__(self, name, value):  # style_func: Django sets it for --no-color and errors
        setattr(self._out, name, value)


class OutboxCommand(BaseCommand):
    """A management command whose stdout and stderr, however Django or the command sets them, are printable."""

    def run_from_argv(self, argv):
        # The process ends with the command (manage.py; call_command never comes here): freezing
        # what it holds at exit spares the interpreter's last collections over the whole heap.
        atexit.register(gc.freeze)
        super().run_from_argv(argv)

    @property
    def stdout(self):
        return self._stdout

    @stdout.setter
    def stdout(self, out):
        self._stdout = out if isinstance(out, PrintableOutput) else PrintableOutput(out)

    @property
    def stderr(self):
        return self._stderr

    @stderr.setter
    def stderr(self, out):
        self._stderr = out if isinstance(out, PrintableOutput) else PrintableOutput(out)
