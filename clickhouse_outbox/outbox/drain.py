"""
The drain: claim → send → finalise, batch after batch, until nothing is due or time is up.

Used by the celery task, `manage.py outbox_drain` and `make demo` alike.

A run's time (`max_seconds`) is checked before each request, not imposed on one: no batch is
claimed, and no request to ClickHouse started (`Backend.starting_until`), once it is up, and
a request started before runs to its own deadline (connect_timeout_secs + timeout_secs). So
a run ends at most one request deadline after its max seconds, and a request is never cut
short by the run's clock (which would spend an attempt, and may leave a write half-known).
"""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.db import DatabaseError, connections
from django.db.models import Q

from clickhouse_outbox import conf
from clickhouse_outbox.clickhouse.backends import get_backend
from clickhouse_outbox.clickhouse.errors import ClickHouseError, OutOfTime
from clickhouse_outbox.db import retry_lock_conflicts
from clickhouse_outbox.models import Batch, Kind, OutboxEntry
from clickhouse_outbox.outbox.claim import claim_batch
from clickhouse_outbox.outbox.finalise import give_back, mark_failed, mark_sent
from clickhouse_outbox.outbox.liveness import claiming
from clickhouse_outbox.outbox.requested import requests_waiting, take_requested
from clickhouse_outbox.outbox.send import send_batch
from clickhouse_outbox.text import about, last_line, plural

log = logging.getLogger(__name__)


@dataclass
class DrainResult:
    batches_sent: int = 0
    rows_sent: int = 0
    deletes_sent: int = 0
    batches_retrying: int = 0
    batches_split: int = 0
    batches_failed: int = 0
    leases_lost: int = 0
    snapshots_taken: int = 0
    #: requested snapshots this run could not take (the subject could not be read): recorded as failed
    snapshots_failed: int = 0
    #: the run's database lock was lost (its session ended from outside): it stopped claiming
    lock_lost: bool = False
    errors: list = field(default_factory=list)

    @property
    def ok(self):
        return not (self.batches_retrying or self.batches_failed or self.leases_lost or self.lock_lost)

    def __str__(self):
        text = f"{plural(self.batches_sent, 'batch', 'batches')} ({plural(self.rows_sent, 'row')}) sent"
        if self.deletes_sent:
            text += f", {plural(self.deletes_sent, 'delete')} applied"
        if self.snapshots_taken:
            text += f", {plural(self.snapshots_taken, 'requested snapshot')} taken"
        if self.snapshots_failed:
            text += f" ({self.snapshots_failed:,} could not be read)"
        for count, words in ((self.batches_retrying, "to retry"), (self.batches_split, "split"),
                             (self.batches_failed, "failed"), (self.leases_lost, "lost to another drainer")):
            if count:
                text += f", {plural(count, 'batch', 'batches')} {words}"
        if self.lock_lost:
            text += "; stopped early: its database lock was lost"
        return text


def drain(*, max_batches=None, max_seconds=None, backend=None, threads=1, claimer=None):
    """
    Send due batches until none is due, `max_batches` were handled or `max_seconds` passed.

    A run stops at the first batch that must be retried (ClickHouse down, credentials
    wrong...): that batch waits for its backoff and the rest stay pending, untouched.
    With `threads` > 1, as many loops claim and send at once (each with its own database
    connection and ClickHouse session), so ClickHouse parses one batch while the next is
    claimed and read: a backlog drains faster; and as many fill deferred learner requests at
    once, before the sends (`outbox.requested.fill_in_threads`).

    The run holds a database lock from before its first claim to after its last update
    (`outbox.liveness`): if the process dies, other drainers take its batches at once.
    `claimer` is a lock the caller holds across several runs; without one, the run takes its own.
    """
    if claimer is None:
        with claiming("a drain run") as own:
            return drain(max_batches=max_batches, max_seconds=max_seconds, backend=backend, threads=threads,
                         claimer=own)
    result = DrainResult()
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    if requests_waiting().exists():  # deferred snapshots first: their rows join this run's batches
        failed = []
        result.snapshots_taken = take_requested(deadline=deadline, failed=failed, claimer=claimer,
                                                threads=max(threads, conf.fill_threads()))
        result.snapshots_failed = len(failed)
        result.errors += [f"{about(subject, last_line(str(exc)) or type(exc).__name__)} (the requested {name} "
                          "snapshot could not be taken)" for name, subject, exc in failed]
        result.lock_lost = claimer.lost
    if threads <= 1:
        return drain_loop(result, max_batches, deadline, backend, claimer)
    share = None if max_batches is None else max(1, max_batches // threads)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="clickhouse_outbox-drain") as pool:
        for part in pool.map(lambda _: in_own_connection(drain_loop, DrainResult(), share, deadline, None, claimer),
                             range(threads)):
            add_up(result, part)
    return result


def in_own_connection(step, *args):
    """Run `step` in this thread, then close the database connection the thread opened."""
    try:
        return step(*args)
    finally:
        connections.close_all()


def drain_loop(result, max_batches, deadline, backend, claimer):
    """
    Claim, send and finalise until nothing is due. The lock is asked for right before each
    claim and each send: a run that lost it (its lock session was ended) stops, and gives
    back a batch it had just claimed.
    """
    owner = claimer.owner()
    backend = backend or get_backend()
    handled = 0
    with backend.starting_until(deadline):
        while max_batches is None or handled < max_batches:
            if deadline is not None and time.monotonic() >= deadline:
                break
            if result.lock_lost or not claimer.holds():
                lock_lost(result, owner)
                break
            batch = retry_lock_conflicts(claim_batch, owner)
            if batch is None:
                break
            if not claimer.holds():
                lock_lost(result, owner, batch)
                break
            handled += 1
            retrying = result.batches_retrying
            if not send_claimed(batch, owner, backend, result):
                break  # the run's time was up before the batch's request could start
            if result.batches_retrying > retrying:
                break  # ClickHouse is failing: leave the rest for the next run instead of trying each batch now
    return result


def lock_lost(result, owner, batch=None):
    """
    Stop the run: its lock is gone, so others may take its claims now. A batch it has just
    claimed goes back unsent, its attempt not counted (if no other drainer took it already).
    """
    left = ""
    if batch is not None:
        left = f"; batch {batch.pk} ({batch.table}) is given back, unsent, to another drainer"
        try:
            retry_lock_conflicts(give_back, batch, owner)
        except DatabaseError as exc:  # the database itself is gone: others see the lock free and take it
            left = f"; batch {batch.pk} ({batch.table}) is left, unsent, to another drainer ({exc})"
    if not result.lock_lost:
        result.lock_lost = True
        result.errors.append(f"this drain run lost its database lock and stopped{left}")
        log.error("clickhouse_outbox: this drain run lost its database lock: it stops claiming%s", left)


def send_claimed(batch, owner, backend, result):
    """Send a claimed batch and record the outcome; False when time was up before anything was sent."""
    started = time.monotonic()
    try:
        send_batch(batch, backend)
    except OutOfTime as exc:
        retry_lock_conflicts(give_back, batch, owner)
        log.info("clickhouse_outbox: batch %s given back unsent: %s", batch.pk, exc)
        return False
    except ClickHouseError as exc:
        outcome = retry_lock_conflicts(mark_failed, batch, owner, exc)
        record_failure(batch, exc, outcome, result)
        return True
    except Exception as exc:  # pylint: disable=broad-except
        # A bug or a database error while building the request: keep the rows, retry later.
        log.exception("clickhouse_outbox: batch %s could not be sent", batch.pk)
        outcome = retry_lock_conflicts(mark_failed, batch, owner, exc)
        record_failure(batch, exc, outcome, result)
        return True
    if retry_lock_conflicts(mark_sent, batch, owner):
        result.batches_sent += 1
        if batch.kind == Kind.DELETE:
            result.deletes_sent += batch.row_count
            what = f"a delete of {plural(batch.row_count, 'subject')}"
        else:
            result.rows_sent += batch.row_count
            what = plural(batch.row_count, "row")
        log.info(
            "clickhouse_outbox: sent batch %s to %s: %s in %.0f ms (attempt %d)",
            batch.pk, batch.table, what, (time.monotonic() - started) * 1000, batch.attempts,
        )
    else:
        result.leases_lost += 1
    return True


def record_failure(batch, exc, outcome, result):
    result.errors.append(f"batch {batch.pk} ({batch.table}): {exc}")
    if outcome == Batch.Status.RETRY:
        result.batches_retrying += 1
        log.warning("clickhouse_outbox: batch %s (%s) will be retried: %s", batch.pk, batch.table, exc)
    elif outcome == Batch.Status.SPLIT:
        result.batches_split += 1
        log.warning("clickhouse_outbox: ClickHouse rejected batch %s (%s); split to isolate rows: %s",
                    batch.pk, batch.table, exc)
    elif outcome == Batch.Status.FAILED:
        result.batches_failed += 1
        log.error("clickhouse_outbox: batch %s (%s) failed for good after %d attempts: %s",
                  batch.pk, batch.table, batch.attempts, exc)
    else:
        result.leases_lost += 1
        log.warning("clickhouse_outbox: lost the lease on batch %s while it failed: %s", batch.pk, exc)


def backlog():
    """What is still to send: requested snapshots, pending entries and batches claimed or waiting to retry."""
    return {
        "pending_entries": OutboxEntry.objects.filter(status=OutboxEntry.Status.PENDING).count()
        + requests_waiting().count(),
        "open_batches": Batch.objects.filter(Q(status=Batch.Status.RETRY) | Q(status=Batch.Status.CLAIMED)).count(),
        "failed_batches": Batch.objects.filter(status=Batch.Status.FAILED).count(),
    }


def drain_until_empty(*, timeout, poll_interval=1.0, backend=None, threads=1):
    """Drain, waiting out backoffs, until nothing is pending or open, or `timeout` seconds pass."""
    with claiming("outbox_drain --until-empty") as claimer:  # one lock for the whole wait
        return drain_until_done(timeout, poll_interval, backend, threads, claimer)


def drain_until_done(timeout, poll_interval, backend, threads, claimer):
    deadline = time.monotonic() + timeout
    total = DrainResult()
    while True:
        result = drain(max_seconds=max(deadline - time.monotonic(), 0.001), backend=backend, threads=threads,
                       claimer=claimer)
        add_up(total, result)
        if result.lock_lost:  # something ended its lock session: stop and say so rather than go on with a new one
            return total, backlog()
        left = backlog()
        if not left["pending_entries"] and not left["open_batches"]:
            return total, left
        if time.monotonic() >= deadline:
            return total, left
        time.sleep(poll_interval)


#: Seconds a drain beside other work waits when nothing was due, and when ClickHouse failed a batch.
ALONGSIDE_IDLE = 0.2
ALONGSIDE_BACKOFF = 1.0


def drain_alongside(work, *, timeout, backend=None, threads=1):
    """
    Run `work()` (a dump job queuing chunks) in this thread while another thread drains what
    it queues, then drain until nothing is pending or open, or `timeout` seconds after `work`
    ended. The chunks are sent as they are written, not after the last: ClickHouse parses one
    while the next is read and encoded (as a celery beat drain beside a dump job does).
    Returns (what `work` returned, the DrainResult, `backlog()`). If `work` raises, the drain
    stops after the batch it is sending and the exception goes on.
    """
    ended, stop = threading.Event(), threading.Event()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse_outbox-alongside") as pool:
        drained = pool.submit(in_own_connection, drain_beside, ended, stop, timeout, backend, threads)
        try:
            outcome = work()
        except BaseException:
            stop.set()
            raise
        finally:
            ended.set()
        try:
            total, left = drained.result()
        except BaseException:  # Ctrl-C while waiting for the last rows
            stop.set()
            raise
    return outcome, total, left


def drain_beside(ended, stop, timeout, backend, threads):
    """
    The thread of `drain_alongside`: short drain runs back to back (a batch per thread each, so
    a `stop` is seen after the batches being sent) while `ended` is not set, then until done.
    """
    total = DrainResult()
    deadline = None
    with claiming("a drain beside a dump job") as claimer:
        while not stop.is_set():
            finishing = ended.is_set()
            if finishing and deadline is None:
                deadline = time.monotonic() + timeout
            max_seconds = None if deadline is None else max(deadline - time.monotonic(), 0.001)
            result = drain(max_batches=max(1, threads), max_seconds=max_seconds, backend=backend, threads=threads,
                           claimer=claimer)
            add_up(total, result)
            if result.lock_lost:
                break
            if finishing:
                left = backlog()
                if not (left["pending_entries"] or left["open_batches"]) or time.monotonic() >= deadline:
                    return total, left
            if not result.batches_sent or result.batches_retrying:
                # Until the work ends, its end wakes the pause (its last chunks go at once; a stop
                # comes with an end); after it, only a stop does.
                (stop if finishing else ended).wait(ALONGSIDE_BACKOFF if result.batches_retrying else ALONGSIDE_IDLE)
    return total, backlog()


def add_up(total, result):
    """Add `result`'s counts and errors (a thread's, a run's) to `total`."""
    for name in ("batches_sent", "rows_sent", "deletes_sent", "batches_retrying", "batches_split", "batches_failed", "leases_lost",
                 "snapshots_taken", "snapshots_failed"):
        setattr(total, name, getattr(total, name) + getattr(result, name))
    total.lock_lost = total.lock_lost or result.lock_lost
    total.errors.extend(result.errors)
