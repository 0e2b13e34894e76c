"""
The Tutor plugin (`tutor plugins enable clickhouse_outbox`): the package in the Open edX
image, the LMS and CMS settings (the producers it takes over from Aspects' sinks), the
drain on the CMS celery beat, an init task and `do` jobs.

Loaded by Tutor, not by Django: it must import neither Django nor the rest of the package,
but the settings' table and the beat schedule's names (both Django-free), where its defaults
and the drain's task name come from. Every value from Tutor's
config is written into the settings as a Python literal (`python_literal`), into comments
escaped to one line, and into the Dockerfile as one quoted shell word: a quote, a line break
or a crafted value can neither break the file nor run code.
"""

import ast
import math

import click
from tutor import exceptions as tutor_exceptions
from tutor import hooks
from tutor import plugins as tutor_plugins

from clickhouse_outbox import __version__
from clickhouse_outbox.schedule import BEAT_ENTRY, DRAIN_TASK, SWEEP_BEAT_ENTRY, SWEEP_TASK
from clickhouse_outbox.settings.table import BY_NAME, DEFAULT_BACKEND_CONFIG

#: Aspects' init tasks run at priorities 92 to 97 (its alembic job creates event_sink's
#: tables at 94): checking those tables comes after them.
INIT_TASK_PRIORITY = 100

#: The outbox's producers, in the order the settings list them, each with the model name
#: platform-plugin-aspects gives the same data (its switch EVENT_SINK_CLICKHOUSE_<MODEL>_ENABLED).
#: user_retirement is the deletes of a retired user's rows (outbox.deletes.RETIREMENT), the
#: peer's auth_user sink. The package's registry is the reference (a test compares them).
PEER_MODELS = {
    "course_structure": "course_overviews",
    "course_enrollment": "course_enrollment",
    "taxonomy": "taxonomy",
    "tag": "tag",
    "object_tag": "object_tag",
    "user_profile": "user_profile",
    "external_id": "external_id",
    "user_retirement": "auth_user",
}
RETIREMENT = "user_retirement"
#: The sweep's interval here (the package's default is 0, off): a few minutes, so a row written
#: without a signal reaches ClickHouse soon after.
SWEEP_INTERVAL_SECS = 300
#: The producers of users' personal data, whose rows a retirement deletes.
PII_PRODUCERS = ("user_profile", "external_id")
#: What CLICKHOUSE_OUTBOX_PRODUCERS holds unless set: the course tables, as before there were others.
DEFAULT_PRODUCERS = ["course_structure"]

hooks.Filters.CONFIG_DEFAULTS.add_items(
    [
        # What `pip install` gets in the image: a version, or a git+https://…@tag URL.
        ("CLICKHOUSE_OUTBOX_PIP_SPEC", f"clickhouse-outbox=={__version__}"),
        ("CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS", BY_NAME["CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS"].default),
        # The sweep of the learner and tag tables (rows written without a signal): off in the
        # package, on here; 0 turns it off.
        ("CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS", SWEEP_INTERVAL_SECS),
        # The producers to take over besides those of Aspects' sinks that Aspects turns on
        # (see takeover() and the settings patch below); without Aspects, the only ones.
        ("CLICKHOUSE_OUTBOX_PRODUCERS", DEFAULT_PRODUCERS),
        # The ClickHouse connection when Aspects is not enabled (with Aspects, its own is used).
        ("CLICKHOUSE_OUTBOX_CLICKHOUSE_URL", DEFAULT_BACKEND_CONFIG["url"]),
        ("CLICKHOUSE_OUTBOX_CLICKHOUSE_USERNAME", DEFAULT_BACKEND_CONFIG["username"]),
        ("CLICKHOUSE_OUTBOX_CLICKHOUSE_DATABASE", DEFAULT_BACKEND_CONFIG["database"]),
        ("CLICKHOUSE_OUTBOX_CLICKHOUSE_TIMEOUT_SECS", DEFAULT_BACKEND_CONFIG["timeout_secs"]),
    ]
)

# Generated once by `tutor config save` and kept in config.yml.
hooks.Filters.CONFIG_UNIQUE.add_items(
    [
        ("CLICKHOUSE_OUTBOX_CLICKHOUSE_PASSWORD", "{{ 24|random_string }}"),
    ]
)


def python_literal(value, name="a value", text=False):
    """
    `value` (a string, number, boolean, None, or a list or dict of them) as Python source that
    evaluates to exactly it; ASCII only, so no character can end a line or the string early.
    Anything else (a date YAML made of a value, NaN; with `text`, anything but a string) is a
    TutorError naming the setting.
    """
    if text and not isinstance(value, str):
        raise tutor_exceptions.TutorError(f"{name} must be a string: quote it in YAML (e.g. --set '{name}=\"0123\"')")
    if not plain(value):
        raise tutor_exceptions.TutorError(
            f"{name} must be a string, a number, true/false, or a list or mapping of those (quote it in YAML)"
        )
    text = ascii(value)
    if ast.literal_eval(text) != value:  # belt and braces: the literal reads back as the value
        raise tutor_exceptions.TutorError(f"{name} cannot be written as a Python literal")
    return text


def plain(value):
    """Whether `value` is made only of what python_literal writes."""
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and plain(item) for key, item in value.items())
    return False


def setting_literal(name, value):
    """A setting of the package's table (settings/table.py), checked as the package checks it, as a literal."""
    problem = BY_NAME[name].problem(value)
    if problem is not None:
        raise tutor_exceptions.TutorError(f"Tutor setting {problem}")
    return python_literal(value, name)


def comment(text):
    """`text` for a Python comment: on one line, every character outside printable ASCII escaped."""
    return "".join(char if char.isascii() and char.isprintable() else ascii(char)[1:-1] for char in str(text))


def shell_word(value, name="CLICKHOUSE_OUTBOX_PIP_SPEC"):
    """`value` as one double-quoted word of a Dockerfile's RUN line (sh): nothing in it is expanded or run."""
    if not isinstance(value, str) or not value or any(char in value for char in "\r\n"):
        raise tutor_exceptions.TutorError(f"{name} must be one line of text, e.g. clickhouse-outbox=={__version__}")
    escaped = "".join("\\" + char if char in '"$`\\' else char for char in value)
    return f'"{escaped}"'


def aspects_enabled():
    """Whether the Aspects plugin is enabled, read when a template is rendered."""
    return tutor_plugins.is_loaded("aspects")


def producer_names(value, setting="CLICKHOUSE_OUTBOX_PRODUCERS"):
    """A list of producer names from a Tutor setting: a list, or a string of names separated by commas or spaces."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if not isinstance(value, (list, tuple)) or not all(isinstance(name, str) for name in value):
        raise tutor_exceptions.TutorError(f"{setting} must be a list of producer names, not {value!r}")
    unknown = [name for name in value if name not in PEER_MODELS]
    if unknown:
        raise tutor_exceptions.TutorError(
            f"{setting}: no producer named {', '.join(map(repr, unknown))}; the producers are {', '.join(PEER_MODELS)}"
        )
    return list(value)


def takeover(ours, models_enabled=None, pii_models=None, enable_pii=False):
    """
    The producers the settings turn on, each with Aspects' sink for the same data turned off,
    read when a template is rendered. `ours` is CLICKHOUSE_OUTBOX_PRODUCERS; the others are
    Aspects' EVENT_SINK_MODELS_ENABLED, EVENT_SINK_PII_MODELS and ASPECTS_ENABLE_PII (unused
    when Aspects is not enabled).

    With Aspects: the producers of every sink Aspects turns on (EVENT_SINK_MODELS_ENABLED,
    and EVENT_SINK_PII_MODELS when ASPECTS_ENABLE_PII is on), plus `ours`, except that
    producers of personal data stay off while ASPECTS_ENABLE_PII is (Aspects' init empties
    their tables then). Without Aspects: `ours`. And user_retirement whenever a producer of
    personal data is on, so that a retired user's rows are deleted.

    Returns {"producers": [{"name", "setting", "peer", "peer_setting", "why"}, ...],
    "notes": [...]}: the producers in PEER_MODELS' order, and what was left alone and why.
    """
    reasons = {}
    notes = []

    def take(name, why):
        reasons.setdefault(name, []).append(why)

    by_model = {model: name for name, model in PEER_MODELS.items()}
    ours = producer_names(ours)
    pii = {*PII_PRODUCERS, RETIREMENT}
    held_back = []  # ours, of personal data, while Aspects' ASPECTS_ENABLE_PII is off
    if aspects_enabled():
        models_enabled = list(models_enabled or [])
        pii_models = list(pii_models or [])
        pii |= {by_model[model] for model in pii_models if model in by_model}
        aspects_on = [(model, "EVENT_SINK_MODELS_ENABLED") for model in models_enabled]
        if enable_pii:
            aspects_on += [(model, "EVENT_SINK_PII_MODELS, ASPECTS_ENABLE_PII being on") for model in pii_models]
        for model, why in aspects_on:
            if model in by_model:
                take(by_model[model], f"Aspects' {why}")
            else:
                notes.append(f"Not taken over: Aspects' {model} sink ({why}), the outbox has no producer for it.")
        held_back = [name for name in ours if name in pii and not enable_pii]
    for name in ours:
        if name not in held_back or name in reasons:
            take(name, "CLICKHOUSE_OUTBOX_PRODUCERS")
    if reasons.keys() & (pii - {RETIREMENT}):
        take(RETIREMENT, "producers of personal data are on: a retired user's rows are deleted")
    if aspects_enabled() and not enable_pii:
        left = [model for model in pii_models if model in by_model and by_model[model] not in reasons]
        if left:
            notes.append(
                f"Not taken over, ASPECTS_ENABLE_PII being off: Aspects' {', '.join(left)} sink{'s' * (len(left) > 1)}"
                f" (EVENT_SINK_PII_MODELS); {', '.join(by_model[model] for model in left)} unset."
            )
        held_back = [name for name in held_back if name not in reasons]
        if held_back:
            notes.append(
                f"Not turned on, ASPECTS_ENABLE_PII being off: {', '.join(held_back)} (CLICKHOUSE_OUTBOX_PRODUCERS)."
            )
    producers = [
        {
            "name": name,
            "setting": f"CLICKHOUSE_OUTBOX_{name.upper()}_ENABLED",
            "peer": PEER_MODELS[name],
            "peer_setting": f"EVENT_SINK_CLICKHOUSE_{PEER_MODELS[name].upper()}_ENABLED",
            "why": "; ".join(dict.fromkeys(reasons[name])),
        }
        for name in PEER_MODELS
        if name in reasons
    ]
    return {"producers": producers, "notes": notes}


hooks.Filters.ENV_TEMPLATE_VARIABLES.add_items(
    [
        ("clickhouse_outbox_aspects_enabled", aspects_enabled),
        ("clickhouse_outbox_takeover", takeover),
        ("clickhouse_outbox_setting", setting_literal),
        ("clickhouse_outbox_beat_entry", BEAT_ENTRY),
        ("clickhouse_outbox_drain_task", DRAIN_TASK),
        ("clickhouse_outbox_sweep_beat_entry", SWEEP_BEAT_ENTRY),
        ("clickhouse_outbox_sweep_task", SWEEP_TASK),
    ]
)
hooks.Filters.ENV_TEMPLATE_FILTERS.add_items(
    [
        ("clickhouse_outbox_literal", python_literal),
        ("clickhouse_outbox_comment", comment),
        ("clickhouse_outbox_shell_word", shell_word),
    ]
)

# The python-requirements stage of the openedx image; the development image builds on it.
hooks.Filters.ENV_PATCHES.add_item(
    (
        "openedx-dockerfile-post-python-requirements",
        """# clickhouse_outbox
RUN --mount=type=cache,target=/openedx/.cache/pip,sharing=shared \\
    pip install {{ CLICKHOUSE_OUTBOX_PIP_SPEC|clickhouse_outbox_shell_word }}
""",
    )
)

# The settings both the LMS and the CMS get: the LMS queues rows (enrollments, profiles,
# retirements), the CMS queues them too (publishes, tags) and drains. They go in
# openedx-lms-common-settings and openedx-cms-common-settings, which Tutor renders after
# openedx-common-settings (where Aspects sets its ClickHouse connection and turns its sinks
# on) in production.py and development.py alike, whatever order the plugins were enabled in.
#
# The producers taken over (see takeover()): Aspects' sink for the same data off
# (EVENT_SINK_CLICKHOUSE_<MODEL>_ENABLED = False), the outbox's producer on
# (CLICKHOUSE_OUTBOX_<PRODUCER>_ENABLED = True), each named in a comment with the reason.
# - With Aspects: one for each sink Aspects turns on, that is each model of its
#   EVENT_SINK_MODELS_ENABLED, and of its EVENT_SINK_PII_MODELS when ASPECTS_ENABLE_PII is
#   on (user_profile, external_id and auth_user, the retirements: user_retirement).
# - CLICKHOUSE_OUTBOX_PRODUCERS (default [course_structure]) adds producers, with Aspects
#   or without it (then they are the only ones), e.g.
#   `tutor config save --set 'CLICKHOUSE_OUTBOX_PRODUCERS=[course_structure, course_enrollment]'`.
#   The names: course_structure, course_enrollment, taxonomy, tag, object_tag,
#   user_profile, external_id, user_retirement. With Aspects, the producers of personal
#   data (user_profile, external_id, user_retirement) are left off while ASPECTS_ENABLE_PII is.
# - user_retirement is on whenever user_profile or external_id is.
# Producers not taken over keep the package's defaults (course_structure on; the others
# follow Aspects' switch, which is then not set by this plugin).
COMMON_SETTINGS = """# clickhouse_outbox (Tutor plugin)
{%- if clickhouse_outbox_aspects_enabled() %}
# ClickHouse: Aspects' EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG above, used as it is.
{%- set clickhouse_outbox = clickhouse_outbox_takeover(
    CLICKHOUSE_OUTBOX_PRODUCERS, EVENT_SINK_MODELS_ENABLED, EVENT_SINK_PII_MODELS, ASPECTS_ENABLE_PII) %}
{%- else %}
EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = {
    "url": {{ CLICKHOUSE_OUTBOX_CLICKHOUSE_URL|clickhouse_outbox_literal("CLICKHOUSE_OUTBOX_CLICKHOUSE_URL", text=True) }},
    "username": {{ CLICKHOUSE_OUTBOX_CLICKHOUSE_USERNAME|clickhouse_outbox_literal("CLICKHOUSE_OUTBOX_CLICKHOUSE_USERNAME", text=True) }},
    "password": {{ CLICKHOUSE_OUTBOX_CLICKHOUSE_PASSWORD|clickhouse_outbox_literal("CLICKHOUSE_OUTBOX_CLICKHOUSE_PASSWORD", text=True) }},
    "database": {{ CLICKHOUSE_OUTBOX_CLICKHOUSE_DATABASE|clickhouse_outbox_literal("CLICKHOUSE_OUTBOX_CLICKHOUSE_DATABASE", text=True) }},
    "timeout_secs": {{ CLICKHOUSE_OUTBOX_CLICKHOUSE_TIMEOUT_SECS|clickhouse_outbox_literal("CLICKHOUSE_OUTBOX_CLICKHOUSE_TIMEOUT_SECS") }},
}
{%- set clickhouse_outbox = clickhouse_outbox_takeover(CLICKHOUSE_OUTBOX_PRODUCERS) %}
{%- endif %}
# Each row is written once, by the outbox. Taken over from platform-plugin-aspects (its sink
# off, the outbox's producer on), and why:
{%- for producer in clickhouse_outbox.producers %}
# {{ producer.name }} on, Aspects' {{ producer.peer }} sink off ({{ producer.why|clickhouse_outbox_comment }})
{{ producer.peer_setting }} = False
{{ producer.setting }} = True
{%- endfor %}
{%- for note in clickhouse_outbox.notes %}
# {{ note|clickhouse_outbox_comment }}
{%- endfor %}
"""

# The drain runs on the CMS worker's beat only. The beat entry is the one
# clickhouse_outbox.schedule.beat_entry() builds: the plugin's own settings ran
# before this file's patches, with the platform's interval.
hooks.Filters.ENV_PATCHES.add_item(
    (
        "openedx-cms-common-settings",
        COMMON_SETTINGS
        + """CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS = {{ clickhouse_outbox_setting(
    "CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS", CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS) }}
try:
    CELERYBEAT_SCHEDULE
except NameError:  # the plugin's own settings did not run (not in the image yet)
    CELERYBEAT_SCHEDULE = {}
CELERYBEAT_SCHEDULE[{{ clickhouse_outbox_beat_entry|clickhouse_outbox_literal }}] = {
    "task": {{ clickhouse_outbox_drain_task|clickhouse_outbox_literal }},
    "schedule": CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS,
    "options": {
        "expires": CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS,
        "expire_seconds": max(1, int(CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS)),
    },
}
CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS = {{ clickhouse_outbox_setting(
    "CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS", CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS) }}
if CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS > 0:
    CELERYBEAT_SCHEDULE[{{ clickhouse_outbox_sweep_beat_entry|clickhouse_outbox_literal }}] = {
        "task": {{ clickhouse_outbox_sweep_task|clickhouse_outbox_literal }},
        "schedule": CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS,
        "options": {
            "expires": CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS,
            "expire_seconds": max(1, int(CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS)),
        },
    }
else:
    CELERYBEAT_SCHEDULE.pop({{ clickhouse_outbox_sweep_beat_entry|clickhouse_outbox_literal }}, None)
""",
    )
)

# The LMS queues rows and never drains: the drain entry the plugin's own settings put in
# every schedule is taken out of the LMS's (the cms-worker's beat runs it).
hooks.Filters.ENV_PATCHES.add_item(
    (
        "openedx-lms-common-settings",
        COMMON_SETTINGS
        + """# The drain runs on the cms-worker's beat only.
try:
    CELERYBEAT_SCHEDULE.pop({{ clickhouse_outbox_beat_entry|clickhouse_outbox_literal }}, None)
    CELERYBEAT_SCHEDULE.pop({{ clickhouse_outbox_sweep_beat_entry|clickhouse_outbox_literal }}, None)
except NameError:  # the plugin's own settings did not run (not in the image yet)
    pass
""",
    )
)

# Tutor runs no CMS celery beat: the cms-worker (one container with `tutor local`) runs
# one embedded. Extra beats (scaled workers) only start drains that find the lock taken.
hooks.Filters.CMS_WORKER_COMMAND.add_items(["--beat", "--schedule=/tmp/cms-celerybeat-schedule"])

# After Tutor's cms init (which migrates) and Aspects' (which creates event_sink's tables). The
# first backfill (what existed before: users, enrollments, taxonomies, courses) is
# queued once for the CMS worker; a later init finds every producer dumped and starts nothing.
hooks.Filters.CLI_DO_INIT_TASKS.add_item(
    (
        "cms",
        """./manage.py cms migrate clickhouse_outbox
{%- if clickhouse_outbox_aspects_enabled() %}
./manage.py cms clickhouse_outbox_schema --check
{%- else %}
./manage.py cms clickhouse_outbox_schema --create
{%- endif %}
./manage.py cms outbox_backfill --queue
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
