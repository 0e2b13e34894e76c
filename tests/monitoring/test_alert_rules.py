"""
docs/monitoring/alerts.yml: valid for Prometheus and doing what its unit tests say
(`promtool check rules`, `promtool test rules`, where Debian's prometheus package put promtool),
and naming only metrics the collector exposes.
"""

import re
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from clickhouse_outbox.monitoring.prometheus import OutboxCollector
from clickhouse_outbox.monitoring.readings import Readings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "monitoring"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus)")


def promtool(*args):
    return subprocess.run([PROMTOOL, *args], cwd=DOCS, capture_output=True, text=True, timeout=120)


@needs_promtool
def test_the_rules_are_valid():
    run = promtool("check", "rules", "alerts.yml")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS: 8 rules found" in run.stdout


@needs_promtool
def test_the_rules_do_what_their_unit_tests_say():
    run = promtool("test", "rules", "alerts-test.yml")
    assert run.returncode == 0, run.stdout + run.stderr


@needs_promtool
def test_a_rule_that_fires_late_fails_its_unit_test(tmp_path):
    """The unit tests can fail: the same tests against a stuck-backlog rule with twice the limit."""
    (tmp_path / "alerts.yml").write_text((DOCS / "alerts.yml").read_text().replace(
        "clickhouse_outbox_oldest_unsent_age_seconds) > 900", "clickhouse_outbox_oldest_unsent_age_seconds) > 1800"))
    shutil.copy(DOCS / "alerts-test.yml", tmp_path)
    run = subprocess.run([PROMTOOL, "test", "rules", "alerts-test.yml"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode != 0 and "ClickHouseOutboxDeliveryStuck" in run.stdout + run.stderr


def test_the_rules_name_only_exposed_metrics():
    now = datetime(2026, 12, 6, tzinfo=timezone.utc)
    everything = Readings(
        checked_at=now, rows={}, deletes={}, failed_batches={}, oldest_unsent_age=0.0, requested_snapshots=0,
        clickhouse_failing=False, last_sent_at=now, window_secs=300, recent_latency_max=1.0, recent_latency_avg=1.0,
        last_verification_at=now, last_verification_done=True,
    )
    registry = CollectorRegistry()
    registry.register(OutboxCollector(reader=lambda: everything))
    exposed = {family.name for family in text_string_to_metric_families(generate_latest(registry).decode())}
    named = set(re.findall(r"\bclickhouse_outbox_[a-z_]+", (DOCS / "alerts.yml").read_text()))
    assert named and named <= exposed, named - exposed
