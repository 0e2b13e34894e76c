"""
The celery tasks' names and celery beat's entries for them: the periodic drain, the
periodic verification and the periodic sweep.

Imports nothing (neither Django nor the rest of the package), so the plugin's settings, the
tasks, the dump dispatcher and the Tutor plugin (loaded by Tutor, not by Django) share one
spelling of each name.
"""

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
    except (TypeError, ValueError):
        whole_seconds = interval  # a bad value: the system checks report it with a fix
    return {"task": DRAIN_TASK, "schedule": interval, "options": {"expires": interval, "expire_seconds": whole_seconds}}


def install_beat_entry(settings, replacing=None):
    """
    Put the periodic drain in celery beat's schedule (edx-platform configures celery from
    old-style setting names). An entry the deployment wrote itself is kept; `replacing` is
    the entry this plugin installed earlier, which may be updated.
    """
    schedule = getattr(settings, "CELERYBEAT_SCHEDULE", None) or {}
    current = schedule.get(BEAT_ENTRY)
    if current is None or current == replacing:
        schedule[BEAT_ENTRY] = beat_entry(settings.CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS)
    settings.CELERYBEAT_SCHEDULE = schedule


def periodic_entry(task, interval):
    """A beat entry running `task` every `interval` seconds, expiring like the drain's entry."""
    return {"task": task, "schedule": interval,
            "options": {"expires": interval, "expire_seconds": max(1, int(interval))}}


def install_periodic_entry(settings, setting, name, task):
    """Beat entry `name` running `task` every `setting` seconds, when that is above 0 (off by default)."""
    interval = getattr(settings, setting, 0)
    try:
        interval = float(interval or 0)
    except (TypeError, ValueError):
        return  # a bad value: the system checks report it
    if interval > 0:
        schedule = getattr(settings, "CELERYBEAT_SCHEDULE", None) or {}
        schedule.setdefault(name, periodic_entry(task, interval))
        settings.CELERYBEAT_SCHEDULE = schedule


def verify_entry(interval):
    """The periodic verification every `interval` seconds."""
    return periodic_entry(VERIFY_TASK, interval)


def install_verify_entry(settings):
    """The periodic verification, when CLICKHOUSE_OUTBOX_VERIFY_INTERVAL_SECS is above 0 (off by default)."""
    install_periodic_entry(settings, "CLICKHOUSE_OUTBOX_VERIFY_INTERVAL_SECS", VERIFY_BEAT_ENTRY, VERIFY_TASK)


def sweep_entry(interval):
    """The periodic sweep every `interval` seconds."""
    return periodic_entry(SWEEP_TASK, interval)


def install_sweep_entry(settings):
    """The periodic sweep, when CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS is above 0 (off by default; the Tutor plugin turns it on)."""
    install_periodic_entry(settings, "CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS", SWEEP_BEAT_ENTRY, SWEEP_TASK)
