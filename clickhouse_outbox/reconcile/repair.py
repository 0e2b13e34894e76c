"""
What a verification that found differences does about them: a dump job of every subject
whose verdict is not ok (its failed subjects; of a table verified by key range, its verdicts
to repair: a new snapshot each: the dashboards read the newest); when asked,
the tables a replica lost created again ON CLUSTER (replication then fetches what the
other replicas hold), and OPTIMIZE ... FINAL DEDUPLICATE of the tables holding duplicated rows.
"""

import logging

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.clickhouse.schema import create_schema, on_cluster
from clickhouse_outbox.clickhouse.tables import get_table
from clickhouse_outbox.dumps.jobs import DumpAlreadyActive, start_job
from clickhouse_outbox.models import DumpJob, DumpJobItem, Verdict
from clickhouse_outbox.reconcile.verify import TO_REPAIR

log = logging.getLogger(__name__)


def start_repair(job):
    """A dump job of the subjects `job` (a finished verification) found to differ; None when there are none."""
    differ = list(job.items.filter(status=DumpJobItem.Status.FAILED).order_by("position")
                  .values_list("producer", "subject"))
    walked = list(job.cursors.values_list("producer", flat=True))  # tables verified by key range: no items, verdicts
    differ += list(job.verdicts.filter(producer__in=walked, verdict__in=TO_REPAIR).order_by("producer", "id")
                   .values_list("producer", "subject"))
    if not differ:
        return None
    try:
        repair = start_job(DumpJob.Scope.SELECTED, subjects=differ, origin=f"repair of job {job.pk}",
                           user=job.requested_by)
    except DumpAlreadyActive as exc:
        log.error("clickhouse_outbox: verification %s found %d subjects to repair, but %s", job.pk, len(differ), exc)
        return None
    DumpJob.objects.filter(pk=job.pk).update(repair_job=repair)
    log.info("clickhouse_outbox: verification %s found %d subjects to repair: dump job %s takes them again", job.pk,
             len(differ), repair.pk)
    return repair


def tables_with_duplicates(verdicts=None):
    """The tables in which the last verification found a row stored more than once."""
    verdicts = Verdict.objects.filter(verdict=Verdict.Kind.DUPLICATES) if verdicts is None else verdicts
    tables = set()
    for details in verdicts.values_list("details", flat=True):
        for tables_of_replica in (details.get("replicas") or {"": details.get("tables", {})}).values():
            tables.update(name for name, counts in tables_of_replica.items() if counts["found"] > counts["distinct"])
    return sorted(tables)


def missing_tables(verdicts):
    """{table: [replica, ...]} of the tables the last verification found missing (a replica that lost them)."""
    missing = {}
    for details in verdicts.values_list("details", flat=True):
        for replica, tables_of_replica in (details.get("replicas") or {"": details.get("tables", {})}).items():
            for name, counts in tables_of_replica.items():
                if counts.get("missing_table") and replica not in missing.setdefault(name, []):
                    missing[name].append(replica)
    return {name: sorted(replicas) for name, replicas in sorted(missing.items())}


def recreate_tables(backend, tables, cluster):
    """CREATE TABLE IF NOT EXISTS ... ON CLUSTER each table: made again where a replica lacks it."""
    return create_schema(backend, cluster=cluster, tables=[get_table(name) for name in tables])


def deduplicate(backend, tables, cluster=None):
    """OPTIMIZE TABLE ... FINAL DEDUPLICATE each table (it rewrites the table: run it when asked, never by default)."""
    done = []
    for table in tables:
        backend.command(f"OPTIMIZE TABLE {qualified_name(backend.database, table)}{on_cluster(cluster)} FINAL DEDUPLICATE")
        done.append(table)
    return done
