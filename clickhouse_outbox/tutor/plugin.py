"""
The Tutor plugin (`tutor plugins enable clickhouse_outbox`): the package in the Open edX
image, the CMS settings, the drain on the CMS celery beat, an init task and `do` jobs.

Loaded by Tutor, not by Django: it must import neither Django nor the rest of the package.
"""

import click
from tutor import hooks
from tutor import plugins as tutor_plugins

from clickhouse_outbox import __version__

#: Aspects' init tasks run at priorities 92 to 97 (its alembic job creates event_sink's
#: tables at 94): checking those tables comes after them.
INIT_TASK_PRIORITY = 100

hooks.Filters.CONFIG_DEFAULTS.add_items(
    [
        # What `pip install` gets in the image: a version, or a git+https://…@tag URL.
        ("CLICKHOUSE_OUTBOX_PIP_SPEC", f"clickhouse-outbox=={__version__}"),
        ("CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS", 60),
        # The ClickHouse connection when Aspects is not enabled (with Aspects, its own is used).
        ("CLICKHOUSE_OUTBOX_CLICKHOUSE_URL", "http://clickhouse:8123"),
        ("CLICKHOUSE_OUTBOX_CLICKHOUSE_USERNAME", "ch_cms"),
        ("CLICKHOUSE_OUTBOX_CLICKHOUSE_DATABASE", "event_sink"),
        ("CLICKHOUSE_OUTBOX_CLICKHOUSE_TIMEOUT_SECS", 5),
    ]
)

# Generated once by `tutor config save` and kept in config.yml.
hooks.Filters.CONFIG_UNIQUE.add_items(
    [
        ("CLICKHOUSE_OUTBOX_CLICKHOUSE_PASSWORD", "{{ 24|random_string }}"),
    ]
)


def aspects_enabled():
    """Whether the Aspects plugin is enabled, read when a template is rendered."""
    return tutor_plugins.is_loaded("aspects")


hooks.Filters.ENV_TEMPLATE_VARIABLES.add_item(("clickhouse_outbox_aspects_enabled", aspects_enabled))

# The python-requirements stage of the openedx image; the development image builds on it.
hooks.Filters.ENV_PATCHES.add_item(
    (
        "openedx-dockerfile-post-python-requirements",
        """# clickhouse_outbox
RUN --mount=type=cache,target=/openedx/.cache/pip,sharing=shared \\
    pip install "{{ CLICKHOUSE_OUTBOX_PIP_SPEC }}"
""",
    )
)

# openedx-cms-common-settings is rendered after openedx-common-settings (where Aspects
# sets its ClickHouse connection and course sink) in both production.py and
# development.py, whatever order the plugins were enabled in. The beat entry is the one
# clickhouse_outbox.settings.common.beat_entry() builds: the plugin's own settings ran
# before this file's patches, with the platform's interval.
hooks.Filters.ENV_PATCHES.add_item(
    (
        "openedx-cms-common-settings",
        """# clickhouse_outbox (Tutor plugin)
{%- if clickhouse_outbox_aspects_enabled() %}
# ClickHouse: Aspects' EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG above, used as it is.
{%- else %}
EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = {
    "url": "{{ CLICKHOUSE_OUTBOX_CLICKHOUSE_URL }}",
    "username": "{{ CLICKHOUSE_OUTBOX_CLICKHOUSE_USERNAME }}",
    "password": "{{ CLICKHOUSE_OUTBOX_CLICKHOUSE_PASSWORD }}",
    "database": "{{ CLICKHOUSE_OUTBOX_CLICKHOUSE_DATABASE }}",
    "timeout_secs": {{ CLICKHOUSE_OUTBOX_CLICKHOUSE_TIMEOUT_SECS }},
}
{%- endif %}
# Each publish is written once, by the outbox: the peers' course sink is off.
EVENT_SINK_CLICKHOUSE_COURSE_OVERVIEWS_ENABLED = False
CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS = {{ CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS }}
try:
    CELERYBEAT_SCHEDULE
except NameError:  # the plugin's own settings did not run (not in the image yet)
    CELERYBEAT_SCHEDULE = {}
CELERYBEAT_SCHEDULE["clickhouse_outbox.drain"] = {
    "task": "clickhouse_outbox.tasks.drain_outbox",
    "schedule": CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS,
    "options": {
        "expires": CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS,
        "expire_seconds": max(1, int(CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS)),
    },
}
""",
    )
)

# Tutor runs no CMS celery beat: the cms-worker (one container with `tutor local`) runs
# one embedded. Extra beats (scaled workers) only start drains that find the lock taken.
hooks.Filters.CMS_WORKER_COMMAND.add_items(["--beat", "--schedule=/tmp/cms-celerybeat-schedule"])

# After Tutor's cms init (which migrates) and Aspects' (which creates event_sink's tables).
hooks.Filters.CLI_DO_INIT_TASKS.add_item(
    (
        "cms",
        """./manage.py cms migrate clickhouse_outbox
{%- if clickhouse_outbox_aspects_enabled() %}
./manage.py cms clickhouse_outbox_schema --check
{%- else %}
./manage.py cms clickhouse_outbox_schema --create
{%- endif %}
""",
    ),
    priority=INIT_TASK_PRIORITY,
)


@click.command(name="outbox-requeue-all", help="Queue a fresh snapshot of every course (clickhouse_outbox)")
def outbox_requeue_all():
    yield ("cms", "./manage.py cms outbox_requeue --all-courses")


@click.command(name="outbox-status", help="Show the outbox's health (clickhouse_outbox)")
def outbox_status():
    yield ("cms", "./manage.py cms outbox_status")


hooks.Filters.CLI_DO_COMMANDS.add_items([outbox_requeue_all, outbox_status])
