"""
Verifications as dump jobs: how the dump job runner takes a verification's chunk (a Verdict
per subject; done when ok, failed when there is something to repair) and what it does when
a verification ends (start its repair). Registered into the runner's table of job actions
(`dumps.run.register_action`) when the app is ready: reconcile builds on dumps, dumps never
imports reconcile.
"""

from clickhouse_outbox.clickhouse.backends import get_backend
from clickhouse_outbox.dumps.run import Outcome, register_action
from clickhouse_outbox.models import DumpJob, DumpJobItem
from clickhouse_outbox.db import db_now
from clickhouse_outbox.reconcile.repair import start_repair
from clickhouse_outbox.reconcile.verify import TO_REPAIR, verify


def verify_chunk(job, rows, producer):
    """An Outcome per claimed subject (all of one producer): done when ok, failed when there is something to repair."""
    checks = verify(producer, [row.subject for row in rows], get_backend(),
                    each_replica=job.replicas == DumpJob.Replicas.EACH, now=db_now(), job=job)
    return [Outcome(producer.name, check.subject,
                    DumpJobItem.Status.FAILED if check.verdict in TO_REPAIR else DumpJobItem.Status.DONE,
                    None, check.summary()) for check in checks]


def verification_done(job):
    """A verification asked to repair starts a dump job of what differs."""
    if job.repair:
        start_repair(job)


register_action(DumpJob.Action.VERIFY, chunk=verify_chunk, done=verification_done)
