"""
Verifications as dump jobs: how the dump job runner takes a verification's chunk (a Verdict
per subject; done when ok, failed when there is something to repair), a key range of a
whole-table verification of a producer dumped by key range (learners: no subject is listed,
only the verdicts that are not ok are kept, the ok ones counted on the job's cursor), and
what it does when a verification ends (start its repair). Registered into the runner's table
of job actions (`dumps.run.register_action`) when the app is ready: reconcile builds on
dumps, dumps never imports reconcile.
"""

import logging

from django.db import transaction
from django.db.models import F

from clickhouse_outbox.clickhouse.backends import get_backend
from clickhouse_outbox.db import db_now, lease_end
from clickhouse_outbox.dumps.run import Outcome, register_action
from clickhouse_outbox.models import DumpCursor, DumpJob, DumpJobItem, Verdict
from clickhouse_outbox.reconcile.repair import start_repair
from clickhouse_outbox.reconcile.verify import TO_REPAIR, record, verify

log = logging.getLogger(__name__)


def verify_chunk(job, rows, producer):
    """An Outcome per claimed subject (all of one producer): done when ok, failed when there is something to repair."""
    checks = verify(producer, [row.subject for row in rows], get_backend(),
                    each_replica=job.replicas == DumpJob.Replicas.EACH, now=db_now(), job=job)
    return [Outcome(producer.name, check.subject,
                    DumpJobItem.Status.FAILED if check.verdict in TO_REPAIR else DumpJobItem.Status.DONE,
                    None, check.summary()) for check in checks]


def verify_range(cursor, producer, owner, size):
    """
    Verify the next `size` keys of `producer`'s table after `cursor` (one key read, then the
    checks of `verify`, set-based), then in one transaction advance the cursor (only while
    `owner` holds it at the key it read from), count the ok subjects and the ones to repair
    on it, and keep the verdicts that are not ok. The keys checked, 0 when the table is done,
    None when the cursor was taken meanwhile (nothing written).
    """
    keys = list(producer.queryset().select_related(None).filter(pk__gt=cursor.last_key).order_by("pk")
                .values_list("pk", flat=True)[:size])
    held_at = DumpCursor.objects.filter(pk=cursor.pk, lease_owner=owner, last_key=cursor.last_key)
    if not keys:
        return 0 if held_at.update(finished=True, lease_owner=None, lease_expires_at=None) else None
    job = cursor.job
    now = db_now()
    checks = verify(producer, [str(key) for key in keys], get_backend(),
                    each_replica=job.replicas == DumpJob.Replicas.EACH, now=now, job=job, recorded=False)
    ok = sum(check.verdict == Verdict.Kind.OK for check in checks)
    to_repair = sum(check.verdict in TO_REPAIR for check in checks)
    with transaction.atomic():
        advanced = held_at.update(last_key=keys[-1], rows_done=F("rows_done") + len(keys), chunks=F("chunks") + 1,
                                  rows_ok=F("rows_ok") + ok, rows_to_repair=F("rows_to_repair") + to_repair,
                                  lease_expires_at=lease_end())
        if not advanced:
            transaction.set_rollback(True)
            log.warning("clickhouse_outbox: lost the %s cursor of verification %s at key %s", producer.name,
                        cursor.job_id, cursor.last_key)
            return None
        record(producer, checks, now, job, ok_too=False)
    cursor.last_key = keys[-1]
    return len(keys)


def verification_done(job):
    """A verification asked to repair starts a dump job of what differs."""
    if job.repair:
        start_repair(job)


register_action(DumpJob.Action.VERIFY, chunk=verify_chunk, done=verification_done, key_range=verify_range)
