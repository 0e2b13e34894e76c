"""
The first backfill: what existed before the outbox was installed (users, enrollments,
taxonomies (the Languages one openedx-core's migrations created up to Ulmo), courses) sent once, with nothing done by
hand. `outbox_backfill` (which the Tutor plugin's init task runs after `migrate`) starts a
whole-table dump job of every producer that is on and that no whole-table dump ever went
through to the end; run again, it starts nothing.
"""

from clickhouse_outbox.dumps.jobs import start_job
from clickhouse_outbox.models import DumpJob
from clickhouse_outbox.outbox import registry

#: The origin of the first backfill's job (and how a later run recognises it under way).
ORIGIN = "outbox_backfill"


def dumped_whole():
    """Names of the producers a whole-table dump job went through to the end for."""
    done = DumpJob.objects.filter(action=DumpJob.Action.DUMP, scope=DumpJob.Scope.ALL, status=DumpJob.Status.DONE)
    return {name for producers in done.values_list("producers", flat=True) for name in producers.split(",") if name}


def never_dumped():
    """The producers that are on, whose source is installed here, and that were never dumped whole (names, sorted)."""
    dumped = dumped_whole()
    return [producer.name for producer in registry.enabled_producers()
            if producer.name not in dumped and getattr(producer, "installed", lambda: True)()]


def start_first_backfill(user=None):
    """A whole-table dump job of `never_dumped()`, or None when there is nothing to backfill; DumpAlreadyActive if busy."""
    names = never_dumped()
    if not names:
        return None
    return start_job(DumpJob.Scope.ALL, origin=ORIGIN, producers=names, user=user)
