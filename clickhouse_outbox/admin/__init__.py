"""
The Django admin of the outbox, the page staff open first being *Courses*: one row per
course with where its rows are. Everything is read-only; actions need their own
permissions and leave an entry in the admin's history.

    deliveries.py  the course view (latest snapshot per course, its delivery state, a summary),
                   and the same for every other producer's subjects
    snapshots.py   every snapshot taken
    batches.py     every INSERT, with its retry bookkeeping
    entries.py     queued rows per table (payloads are not shown)
    dump_jobs.py   full dumps in the background: start, follow, cancel
    actions.py     the actions the lists share: requeue, retry now, dismiss
    base.py        read-only admin, permissions, audit, how times and states are shown
"""

from clickhouse_outbox.admin import batches, deliveries, dump_jobs, entries, snapshots  # noqa: F401
