"""
The celery tasks' names and celery beat's entries for them: the periodic drain, the
periodic verification and the periodic sweep.

Imports neither Django nor the rest of the package but the settings' table (Django-free
too), so the plugin's settings, the tasks, the dump dispatcher and the Tutor plugin (loaded
by Tutor, not by Django) share one spelling of each name.
"""

import math

from clickhouse_outbox.settings.table import BY_NAME as SETTINGS_BY_NAME

DRAIN_INTERVAL = "CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS"
VERIFY_INTERVAL = "CLICKHOUSE_OUTBOX_VERIFY_INTERVAL_SECS"
SWEEP_INTERVAL = "CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS"

BEAT_ENTRY = "clickhouse_outbox.drain"
#: The celery tasks' names (tasks.py), here so that the beat entries, the dump dispatcher and the
#: Tutor plugin need not import tasks.
DRAIN_TASK = "clickhouse_outbox.tasks.drain_outbox"
DUMP_TASK = "clickhouse_outbox.tasks.run_dump_job"
VERIFY_TASK = "clickhouse_outbox.tasks.verify_outbox"
VERIFY_BEAT_ENTRY = "clickhouse_outbox.verify"
SWEEP_TASK = "clickhouse_outbox.tasks.sweep_outbox"
SWEEP_BEAT_ENTRY = "clickhouse_outbox.sweep"


def beat_entry(interval):
    """
    The periodic drain every `interval` seconds, each run expiring if not started by the next.
    Celery's own scheduler reads `expires`; django-celery-beat's DatabaseScheduler reads only
    `expire_seconds` (a whole number), so both are given.
    """
    try:
        whole_seconds = max(1, int(interval))
    except (TypeError, ValueError, OverflowError):
        whole_seconds = interval  # a bad value (infinity too): the system checks report it with a fix
    return {"task": DRAIN_TASK, "schedule": interval, "options": {"expires": interval, "expire_seconds": whole_seconds}}


def configured(settings, name):
    """
    Setting `name` of the table as `settings` holds it, the table's default when unset.
    `settings` is the settings module the plugin's settings are building: `conf.value` cannot
    read it (it reads django.conf.settings, not configured yet, and would import Django where
    the Tutor plugin loads this module). Neither checked nor cast: a bad value is left to the
    system checks, which say how to fix it.
    """
    return getattr(settings, name, SETTINGS_BY_NAME[name].default)


def drain_entry(settings):
    """The periodic drain as `settings` configure it."""
    return beat_entry(configured(settings, DRAIN_INTERVAL))


def periodic_entry(task, interval):
    """A beat entry running `task` every `interval` seconds, expiring like the drain's entry."""
    return {"task": task, "schedule": interval,
            "options": {"expires": interval, "expire_seconds": max(1, int(interval))}}


def configured_periodic_entry(settings, setting, task):
    """
    The beat entry running `task` every `setting` seconds; None when that is 0 (off, the
    default) or no number of seconds: a boolean (YAML's `yes` would be a run every second),
    NaN, infinity or text other than a number, which the system checks report.
    """
    value = configured(settings, setting)
    if isinstance(value, bool):
        return None
    try:
        interval = float(value or 0)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(interval) or interval <= 0:
        return None
    return periodic_entry(task, interval)


def planned_entries(settings):
    """
    {name: entry} of every beat entry the plugin's settings install for `settings`, None for
    one that is off: the drain; the verification and the sweep when their interval is above 0.
    """
    return {
        BEAT_ENTRY: drain_entry(settings),
        VERIFY_BEAT_ENTRY: configured_periodic_entry(settings, VERIFY_INTERVAL, VERIFY_TASK),
        SWEEP_BEAT_ENTRY: configured_periodic_entry(settings, SWEEP_INTERVAL, SWEEP_TASK),
    }


def install_entries(settings, replacing=None, names=None):
    """
    Put the plugin's entries (`planned_entries`, or those of them in `names`) in celery beat's
    schedule (edx-platform configures celery from old-style setting names). An entry the
    deployment wrote itself is kept; `replacing` ({name: entry}, what `planned_entries` gave
    before the settings changed) holds the entries this plugin installed earlier, which are
    updated, or removed when their interval is now 0.
    """
    replacing = replacing or {}
    schedule = getattr(settings, "CELERYBEAT_SCHEDULE", None) or {}
    changed = False
    for name, entry in planned_entries(settings).items():
        if names is not None and name not in names:
            continue
        current = schedule.get(name)
        if current is not None and current != replacing.get(name):
            continue  # the deployment's own
        if entry is not None:
            schedule[name] = entry
            changed = True
        elif current is not None:
            del schedule[name]
            changed = True
    if changed:
        settings.CELERYBEAT_SCHEDULE = schedule


def install_beat_entry(settings, replacing=None):
    """The periodic drain alone (see `install_entries`); `replacing` is the drain entry this plugin installed earlier."""
    install_entries(settings, {BEAT_ENTRY: replacing}, names=(BEAT_ENTRY,))


def verify_entry(interval):
    """The periodic verification every `interval` seconds."""
    return periodic_entry(VERIFY_TASK, interval)


def install_verify_entry(settings):
    """The periodic verification alone, when CLICKHOUSE_OUTBOX_VERIFY_INTERVAL_SECS is above 0 (off by default)."""
    install_entries(settings, names=(VERIFY_BEAT_ENTRY,))


def sweep_entry(interval):
    """The periodic sweep every `interval` seconds."""
    return periodic_entry(SWEEP_TASK, interval)


def install_sweep_entry(settings):
    """The periodic sweep alone, when CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS is above 0 (off by default; the Tutor plugin turns it on)."""
    install_entries(settings, names=(SWEEP_BEAT_ENTRY,))
