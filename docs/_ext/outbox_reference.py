"""
The reference pages' generated parts, made at build time so they cannot drift from the code:

* ``.. outbox-settings::`` and ``.. outbox-backend-keys::``: the tables of settings, rendered by
  ``clickhouse_outbox.settings.docs`` from the one table of settings (settings/table.py), the
  same renderer ``scripts/settings-docs`` uses;
* ``.. outbox-command:: NAME``: a management command's ``--help``, from the parser the command
  itself builds (Django set up with the plugin installed and no database);
* ``.. outbox-other-commands::``: a section with the ``--help`` of every command the page has
  not documented yet, so a command added later appears by itself until someone writes its
  prose.

The build fails (a warning, under ``-W``) if the settings table is rendered nowhere or a
command is documented nowhere.
"""

import os
import pkgutil
import re

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.nodes import nested_parse_with_titles

log = logging.getLogger(__name__)

COLUMNS = "100"  # argparse wraps --help to $COLUMNS: fixed, so the page is the same everywhere


def setup_django():
    """Django with the plugin installed, no database: enough to build the commands' parsers."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            INSTALLED_APPS=[
                "django.contrib.contenttypes",
                "django.contrib.auth",
                "django.contrib.admin",
                "clickhouse_outbox.apps.ClickhouseOutboxConfig",
            ],
            DATABASES={},
        )
        django.setup()


def command_names():
    """Every management command the plugin ships, by module name."""
    from clickhouse_outbox.management import commands

    return sorted(module.name for module in pkgutil.iter_modules(commands.__path__) if not module.name.startswith("_"))


def command_help(name):
    """`manage.py NAME --help`, as the command's own parser prints it."""
    setup_django()
    from django.core.management import load_command_class

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = COLUMNS
    try:
        return load_command_class("clickhouse_outbox", name).create_parser("manage.py", name).format_help()
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous


class GeneratedRst(Directive):
    """A directive whose content is RST made by `rst()`, parsed in place."""

    source = "generated"

    def rst(self):
        raise NotImplementedError

    def run(self):
        node = nodes.container()
        lines = StringList(self.rst().splitlines(), source=self.source)
        self.state.nested_parse(lines, self.content_offset, node)
        return node.children


class SettingsTable(GeneratedRst):
    """Every setting of settings/table.py: name, default, meaning and accepted values."""

    source = "clickhouse_outbox/settings/table.py"

    def rst(self):
        from clickhouse_outbox.settings import docs

        env = self.state.document.settings.env
        env.outbox_settings_rendered.add(env.docname)
        return docs.reference_tables()[0]


class BackendKeysTable(GeneratedRst):
    """The keys of EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG, from the same table."""

    source = "clickhouse_outbox/settings/table.py"

    def rst(self):
        from clickhouse_outbox.settings import docs

        return docs.reference_tables()[1]


class CommandHelp(Directive):
    """``.. outbox-command:: NAME``: NAME's --help as a literal block."""

    required_arguments = 1

    def run(self):
        name = self.arguments[0]
        if name not in command_names():
            raise self.error(f"outbox-command: no management command {name!r} in clickhouse_outbox")
        env = self.state.document.settings.env
        env.outbox_commands_documented.setdefault(env.docname, set()).add(name)
        text = command_help(name).rstrip()
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


class OtherCommands(Directive):
    """``.. outbox-other-commands::``: a section per command not documented above it on the page."""

    def run(self):
        env = self.state.document.settings.env
        documented = env.outbox_commands_documented.setdefault(env.docname, set())
        rest = [name for name in command_names() if name not in documented]
        lines = []
        for name in rest:
            lines += [name, "*" * len(name), "", f".. outbox-command:: {name}", ""]
        node = nodes.container()
        nested_parse_with_titles(self.state, StringList(lines, source="clickhouse_outbox/management/commands"), node)
        return node.children


#: A decision record's link to another, as GitHub renders it: `.. _0004: 0004-delivery-and-retries.rst`.
RECORD_LINK = re.compile(r"^(\.\. _[^:]+: )(\d{4}-[a-z0-9-]+)\.rst$", re.M)


def link_records_to_pages(app, docname, source):
    """The records link to each other's .rst files (for GitHub); in the built docs, to their pages."""
    if docname.startswith("decisions/"):
        source[0] = RECORD_LINK.sub(r"\1\2.html", source[0])


def init_env(app, env, docnames):
    if not hasattr(env, "outbox_commands_documented"):
        env.outbox_commands_documented = {}
    if not hasattr(env, "outbox_settings_rendered"):
        env.outbox_settings_rendered = set()


def purge_doc(app, env, docname):
    getattr(env, "outbox_commands_documented", {}).pop(docname, None)
    getattr(env, "outbox_settings_rendered", set()).discard(docname)


def check_coverage(app, env):
    """A command documented nowhere, or a settings table rendered nowhere, is a warning (an error under -W)."""
    documented = set().union(set(), *env.outbox_commands_documented.values())
    for name in sorted(set(command_names()) - documented):
        log.warning("management command %s has no `.. outbox-command::` in the docs", name)
    if not env.outbox_settings_rendered:
        log.warning("the settings table (`.. outbox-settings::`) is rendered on no page")


def setup(app):
    app.connect("source-read", link_records_to_pages)
    app.connect("env-before-read-docs", init_env)
    app.connect("env-purge-doc", purge_doc)
    app.add_directive("outbox-settings", SettingsTable)
    app.add_directive("outbox-backend-keys", BackendKeysTable)
    app.add_directive("outbox-command", CommandHelp)
    app.add_directive("outbox-other-commands", OtherCommands)
    app.connect("env-check-consistency", check_coverage)
    return {"version": "1", "parallel_read_safe": False, "parallel_write_safe": True}
