"""Addresses of the admin's pages, posting an action as the admin's form does, and drains the server refuses."""

from django.urls import reverse

from clickhouse_outbox.outbox.drain import drain

#: A password the test server refuses: its batches fail with ClickHouse's "wrong password" error.
WRONG_PASSWORD = "wrong-password-admin-tests"  # noqa: S105 (not a secret)


def url(name, *args):
    """reverse("admin:clickhouse_outbox_<name>"), e.g. url("coursedelivery_changelist")."""
    return reverse(f"admin:clickhouse_outbox_{name}", args=args)


COURSES = "coursedelivery_changelist"
SNAPSHOTS = "snapshot_changelist"
BATCHES = "batch_changelist"
ENTRIES = "outboxentry_changelist"
DUMP_JOBS = "dumpjob_changelist"


def post_action(client, changelist, action, objects, query="", follow=False):
    """Run `action` on `objects` from the changelist `changelist` (a name above), as the action menu posts it."""
    return client.post(
        url(changelist) + query,
        {"action": action, "_selected_action": [str(obj.pk) for obj in objects], "index": "0"},
        follow=follow,
    )


def drain_with_password(settings, password, *, max_attempts=None):
    """One drain with `password` in place of the right one (and `max_attempts` if given); then the right one again."""
    good = settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(good, password=password)
    if max_attempts is not None:
        settings.CLICKHOUSE_OUTBOX_MAX_ATTEMPTS = max_attempts
    try:
        return drain()
    finally:
        settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = good
        if max_attempts is not None:
            del settings.CLICKHOUSE_OUTBOX_MAX_ATTEMPTS


def refused_drain(settings, *, max_attempts=None):
    """A drain the server refuses (wrong password): the first batch waits to retry, or fails if out of attempts."""
    result = drain_with_password(settings, WRONG_PASSWORD, max_attempts=max_attempts)
    assert result.errors and not result.batches_sent, result
    return result


def fail_for_good(settings):
    """A drain the server refuses with one attempt allowed: every batch it claims fails for good."""
    return refused_drain(settings, max_attempts=1)
