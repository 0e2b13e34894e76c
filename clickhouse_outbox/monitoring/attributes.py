"""
The drain task's custom attributes, the Open edX way (edx-django-utils' set_custom_attribute):
whatever telemetry backend the site configures (OPENEDX_TELEMETRY: New Relic, Datadog,
OpenTelemetry) gets them on the task's transaction or span, so a dashboard or an alert can
be built on the run's outcome and the outbox's state right after it.

Each attribute is named clickhouse_outbox.<name>; ages are in seconds; an age that does
not apply (nothing sent yet, never verified) is left unset rather than made up.
"""

from edx_django_utils.monitoring import set_custom_attribute

PREFIX = "clickhouse_outbox."


def drain_attributes(result, readings, seconds):
    """{name: value} of a drain run (`result`, a DrainResult, lasting `seconds`) and the readings after it."""
    attributes = {
        # The run.
        "drain_seconds": round(seconds, 3),
        "batches_sent": result.batches_sent,
        "rows_sent": result.rows_sent,
        "deletes_sent": result.deletes_sent,
        "batches_retrying": result.batches_retrying,
        "batches_failed": result.batches_failed,
        "batches_split": result.batches_split,
        "leases_lost": result.leases_lost,
        "lock_lost": result.lock_lost,
        "snapshots_taken": result.snapshots_taken,
        "snapshots_failed": result.snapshots_failed,
    }
    if readings is None:
        return attributes
    attributes.update({
        # The outbox after it.
        "unsent_rows": readings.unsent_rows(),
        "unsent_deletes": readings.unsent_deletes(),
        "failed_rows": readings.failed_rows(),
        "failed_batches": readings.total_failed_batches(),
        "oldest_unsent_age_seconds": round(readings.oldest_unsent_age, 3),
        "requested_snapshots": readings.requested_snapshots,
        "clickhouse_failing": readings.clickhouse_failing,
        "differing_subjects": sum(readings.differing.values()),
    })
    if readings.recent_latency_max is not None:
        attributes["recent_delivery_latency_max_seconds"] = round(readings.recent_latency_max, 3)
    if readings.last_verification_at is not None:
        attributes["last_verification_age_seconds"] = round(readings.seconds_since(readings.last_verification_at), 3)
        attributes["last_verification_completed"] = readings.last_verification_done
    return attributes


def set_drain_attributes(result, readings, seconds):
    for name, value in drain_attributes(result, readings, seconds).items():
        set_custom_attribute(PREFIX + name, value)
