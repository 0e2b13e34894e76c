"""
Taking snapshots of subjects through their producer, in the caller's transaction: what a
change (a publish, an enrollment, a profile saved), a requeue and the admin do.

The platform sends its signals with `send_robust`, which would reduce an exception to a
log line: a subject that cannot be read is instead kept as a failed snapshot, with the
error, that `outbox_requeue --failed` or the admin takes again.
"""

import logging
import uuid

from django.db import transaction

from clickhouse_outbox import conf
from clickhouse_outbox.db import db_now
from clickhouse_outbox.outbox.enqueue import enqueue, record_failed_snapshot
from clickhouse_outbox.outbox.requested import request_snapshot
from clickhouse_outbox.sources.base import SubjectNotFound
from clickhouse_outbox.text import last_line

log = logging.getLogger(__name__)


def take(producer, subject, reason, *, found=None, skip_unchanged=False):
    """
    Read `subject`, serialize it and queue its rows; raise if any step fails. Returns the
    Snapshot, or None when nothing is to be queued (the rows of a retired user).

    Runs in a savepoint of the caller's transaction: if the change rolls back, nothing is
    queued; if this fails, the caller's transaction is left as it was. `found` is the
    subject's row the caller already read in this transaction (a model row producer's, see
    `prepare_found`), not read again. With `skip_unchanged` (a signal), rows the subject's
    latest unsent snapshot already holds are not queued again: that snapshot is returned.
    """
    subject = producer.parse_subject(subject)
    with transaction.atomic():
        now = db_now()
        prepared = producer.prepare_found(found, now=now) if found is not None else producer.prepare([subject], now=now)[0]
        if prepared.error is not None:
            raise prepared.error
        return enqueue(producer, [prepared], reason=reason, skip_unchanged=skip_unchanged)[0]


def take_or_record_failure(producer, subject, reason, *, record_not_found=True, found=None, skip_unchanged=False):
    """
    What a signal receiver calls: `take`, with a failure recorded as a failed snapshot (and
    logged) instead of raised. With `record_not_found=False` (a subject an operator typed, or
    listed moments ago) a subject the source does not know raises SubjectNotFound instead: a
    failed snapshot of something that does not exist would only be retried forever.
    """
    try:
        return take(producer, subject, reason, found=found, skip_unchanged=skip_unchanged)
    except SubjectNotFound as exc:
        if not record_not_found:
            raise
        failure = exc
    except Exception as exc:  # pylint: disable=broad-except
        failure = exc
    log.error("clickhouse_outbox: could not take a %s snapshot of %s (%s); recorded as failed", producer.name,
              subject, reason, exc_info=failure)
    return record_failed_snapshot(producer.name, str(subject), failure, dump_id=uuid.uuid4(), reason=reason,
                                  user_id=producer.user_of_subject(subject))


def take_or_request(producer, subject, reason, *, found=None):
    """
    What a change does: take the snapshot now, or (CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain")
    only request it, in the caller's transaction, for the drain to take. A snapshot with the
    rows of the subject's latest unsent one is not taken again (`outbox.unchanged`).
    """
    if conf.snapshot_at() != "drain":
        return take_or_record_failure(producer, subject, reason, found=found, skip_unchanged=True)
    return request(producer, subject, reason)


def request(producer, subject, reason):
    """Ask the drain to take a snapshot of `subject` (two short statements); a subject that is not one is recorded as failed."""
    try:
        subject = producer.parse_subject(subject)
    except ValueError as exc:
        return record_failed_snapshot(producer.name, str(subject), exc, dump_id=uuid.uuid4(), reason=reason)
    return request_snapshot(producer.name, subject, reason)


def queue_subjects(producer, subjects, reason, *, on_progress=None):
    """
    Take a snapshot of each subject, each in its own transaction: one that cannot be read is
    recorded as a failed snapshot and the others go on; one the source does not know (or
    that is not a subject at all) is reported and recorded nowhere. Returns (snapshots,
    failures), failures being (subject, error message) pairs; `on_progress(index, subject,
    snapshot or None)` is called after each.
    """
    snapshots, failures = [], []
    for index, value in enumerate(subjects, start=1):
        snapshot = None
        try:
            subject = producer.parse_subject(value)
        except ValueError as exc:
            failures.append((str(value), str(exc)))
        else:
            try:
                with transaction.atomic():
                    snapshot = take_or_record_failure(producer, subject, reason, record_not_found=False)
            except SubjectNotFound as exc:
                failures.append((subject, str(exc)))
            else:
                if snapshot is None:
                    failures.append((subject, "not queued: its user was retired"))
                elif snapshot.status == snapshot.Status.FAILED:
                    failures.append((subject, last_line(snapshot.error)))
                else:
                    snapshots.append(snapshot)
        if on_progress:
            on_progress(index, value, snapshot)
    return snapshots, failures
