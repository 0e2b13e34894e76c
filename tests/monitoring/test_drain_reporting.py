"""
What the drain task reports after a run: custom attributes through edx-django-utils' real
set_custom_attribute (to a recording telemetry backend named in OPENEDX_TELEMETRY, as a site
names New Relic's), and StatsD lines received on a real UDP socket on the loopback.
"""

import io
import socket

import pytest
from django.core.management import CommandError

from clickhouse_outbox.models import Batch
from clickhouse_outbox.tasks import drain_outbox
from tests.factories import BatchFactory, CourseSnapshotFactory
from tests.monitoring import recorder
from tests.monitoring.conftest import age_unsent

pytestmark = pytest.mark.django_db


@pytest.fixture
def recorded(settings):
    settings.OPENEDX_TELEMETRY = ["tests.monitoring.recorder.RecordingBackend"]  # edx-django-utils reloads on change
    recorder.RECORDED.clear()
    yield recorder.RECORDED
    recorder.RECORDED.clear()


@pytest.fixture
def statsd_socket(settings):
    """A UDP socket on the loopback, and the settings that point the drain's StatsD client at it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    settings.CLICKHOUSE_OUTBOX_STATSD_HOST = "127.0.0.1"
    settings.CLICKHOUSE_OUTBOX_STATSD_PORT = sock.getsockname()[1]
    settings.CLICKHOUSE_OUTBOX_STATSD_PREFIX = "edx.outbox"
    yield sock
    sock.close()


def received(sock):
    """{name: [(value, type)]} of every StatsD line waiting on `sock`."""
    lines = []
    sock.settimeout(2)
    try:
        while True:
            lines += sock.recv(65536).decode("ascii").splitlines()
            sock.settimeout(0.2)  # the rest of the pipeline's packets follow at once
    except TimeoutError:
        pass
    found = {}
    for line in lines:
        name, _, rest = line.partition(":")
        value, _, kind = rest.partition("|")
        found.setdefault(name, []).append((float(value), kind))
    return found


@pytest.mark.clickhouse_server
def test_the_drain_task_sets_custom_attributes(server_clickhouse, recorded):
    sent = CourseSnapshotFactory(course__blocks=20)
    BatchFactory(row_count=4)
    assert drain_outbox.apply().get()["batches_sent"] == 3
    waiting = CourseSnapshotFactory(course__blocks=5)  # queued after the run: not in its readings
    attributes = dict(recorded)
    assert attributes["clickhouse_outbox.drain_skipped"] is False
    assert attributes["clickhouse_outbox.batches_sent"] == 3
    assert attributes["clickhouse_outbox.rows_sent"] == sent.row_count
    assert attributes["clickhouse_outbox.batches_failed"] == 0 and attributes["clickhouse_outbox.lock_lost"] is False
    assert attributes["clickhouse_outbox.unsent_rows"] == 0
    assert attributes["clickhouse_outbox.failed_batches"] == 1 and attributes["clickhouse_outbox.failed_rows"] == 4
    assert attributes["clickhouse_outbox.oldest_unsent_age_seconds"] == 0
    assert attributes["clickhouse_outbox.clickhouse_failing"] is False
    assert attributes["clickhouse_outbox.drain_seconds"] > 0
    latency = attributes["clickhouse_outbox.recent_delivery_latency_max_seconds"]
    batch = Batch.objects.filter(status=Batch.Status.SENT).order_by("-sent_at").first()
    assert 0 < latency < 60 and batch.sent_at is not None
    assert "clickhouse_outbox.last_verification_age_seconds" not in attributes  # never verified: left unset
    assert all(key.startswith("clickhouse_outbox.") for key in attributes)

    recorded.clear()
    age_unsent(30)
    drain_outbox.apply().get()
    attributes = dict(recorded)
    assert attributes["clickhouse_outbox.rows_sent"] == waiting.row_count
    assert attributes["clickhouse_outbox.unsent_rows"] == 0


def test_a_skipped_run_says_so(recorded):
    from django.core.cache import cache

    from clickhouse_outbox.tasks import LOCK_KEY

    assert cache.add(LOCK_KEY, "another-run", timeout=60)
    try:
        assert drain_outbox.apply().get() == {"skipped": True}
    finally:
        cache.delete(LOCK_KEY)
    assert recorded == [("clickhouse_outbox.drain_skipped", True)]


@pytest.mark.clickhouse_server
def test_the_drain_task_sends_statsd_metrics(server_clickhouse, statsd_socket):
    sent = CourseSnapshotFactory(course__blocks=20)
    BatchFactory(row_count=4)
    drain_outbox.apply().get()
    found = received(statsd_socket)
    assert found["edx.outbox.drain.runs"] == [(1, "c")]
    assert found["edx.outbox.drain.batches_sent"] == [(3, "c")]
    assert found["edx.outbox.drain.rows_sent"] == [(sent.row_count, "c")]
    [(duration, kind)] = found["edx.outbox.drain.duration"]
    assert kind == "ms" and duration > 0
    assert found["edx.outbox.rows.course_blocks.pending"] == [(0, "g")]
    assert found["edx.outbox.rows.course_blocks.failed"] == [(4, "g")]
    assert found["edx.outbox.failed_batches.insert"] == [(1, "g")]
    assert found["edx.outbox.oldest_unsent_age_seconds"] == [(0, "g")]
    assert found["edx.outbox.clickhouse_failing"] == [(0, "g")]


def test_a_waiting_backlog_in_statsd(statsd_socket, settings):
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = {"url": "http://127.0.0.1:9", "connect_timeout_secs": 1}
    snapshot = CourseSnapshotFactory(course__blocks=5)
    age_unsent(300)
    drain_outbox.apply().get()  # ClickHouse unreachable: one batch waits, the rest stays pending
    found = received(statsd_socket)
    assert found["edx.outbox.clickhouse_failing"] == [(1, "g")]
    assert found["edx.outbox.drain.batches_retrying"] == [(1, "c")]
    unsent = sum(value for name, ((value, _),) in found.items() if name.startswith("edx.outbox.rows.")
                 and name.rsplit(".", 1)[1] in ("pending", "sending", "waiting"))
    assert unsent == snapshot.row_count
    [(age, _)] = found["edx.outbox.oldest_unsent_age_seconds"]
    assert 300 <= age < 360


def test_no_statsd_host_sends_nothing(settings):
    from clickhouse_outbox.monitoring.statsd_push import push
    from clickhouse_outbox.outbox.drain import DrainResult

    settings.CLICKHOUSE_OUTBOX_STATSD_HOST = ""
    assert push(DrainResult(), None, 0.1) is False
    settings.CLICKHOUSE_OUTBOX_STATSD_HOST = "no-such-host.invalid"
    assert push(DrainResult(), None, 0.1) is False  # logged, never raised into the drain


def test_outbox_drain_reports_as_the_task_does(statsd_socket, settings):
    """Sites without celery beat run outbox_drain from cron (or --loop): it sends the same StatsD metrics."""
    from django.core.management import call_command

    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = {"url": "http://127.0.0.1:9", "connect_timeout_secs": 1}
    snapshot = CourseSnapshotFactory(course__blocks=5)
    with pytest.raises(CommandError):  # ClickHouse unreachable: exit status 1
        call_command("outbox_drain", stdout=io.StringIO())
    found = received(statsd_socket)
    assert found["edx.outbox.drain.runs"] == [(1, "c")]
    assert found["edx.outbox.drain.batches_retrying"] == [(1, "c")]
    assert found["edx.outbox.clickhouse_failing"] == [(1, "g")]
    assert sum(value for name, ((value, _),) in found.items() if name.startswith("edx.outbox.rows.")) == \
        snapshot.row_count
