"""
The outbox's health for a probe: healthy, or the list of what is wrong, in words an operator
can act on. Delivery only: the oldest unsent row older than CLICKHOUSE_OUTBOX_STATUS_MAX_AGE_SECS
(outbox_status's exit 2), more failed batches than CLICKHOUSE_OUTBOX_HEALTH_MAX_FAILED_BATCHES,
ClickHouse failing, and (CLICKHOUSE_OUTBOX_HEALTH_CHECKS_CLICKHOUSE) ClickHouse not answering.

What it says holds no secret and no row data: counts, ages, and the last line of a ClickHouse
error, from which the configured password is withheld even if a server were to echo it.
"""

from dataclasses import dataclass

from clickhouse_outbox import conf
from clickhouse_outbox.clickhouse.backends import get_backend
from clickhouse_outbox.text import format_age, last_line, plural


@dataclass
class Health:
    problems: list
    readings: object = None
    #: "not checked", "answering" or "not answering"
    clickhouse: str = "not checked"

    @property
    def healthy(self):
        return not self.problems

    def as_dict(self):
        readings = self.readings
        body = {"healthy": self.healthy, "problems": self.problems, "clickhouse": self.clickhouse}
        if readings is not None:
            body.update({
                "checked_at": readings.checked_at.isoformat(),
                "oldest_unsent_age_seconds": round(readings.oldest_unsent_age, 3),
                "max_age_seconds": conf.status_max_age_secs(),
                "unsent_rows": readings.unsent_rows(),
                "unsent_deletes": readings.unsent_deletes(),
                "failed_batches": readings.total_failed_batches(),
                "max_failed_batches": conf.value("CLICKHOUSE_OUTBOX_HEALTH_MAX_FAILED_BATCHES"),
                "last_sent_at": readings.last_sent_at.isoformat() if readings.last_sent_at else None,
            })
        return body


def assess(readings, *, check_clickhouse=None):
    """The Health of `readings` (monitoring.readings); ClickHouse asked too when `check_clickhouse` (default: the setting)."""
    problems = []
    max_age = conf.status_max_age_secs()
    if readings.oldest_unsent_age > max_age:
        problems.append(f"the oldest unsent row has waited {format_age(readings.oldest_unsent_age)} "
                        f"(more than {format_age(max_age)}): delivery is stuck")
    failed, allowed = readings.total_failed_batches(), conf.value("CLICKHOUSE_OUTBOX_HEALTH_MAX_FAILED_BATCHES")
    if failed > allowed:
        problems.append(f"{plural(failed, 'batch', 'batches')} failed for good (more than {allowed}): retry them "
                        "in the admin or with outbox_requeue --failed")
    if readings.clickhouse_failing:
        problems.append("ClickHouse is failing: a batch waits to retry after a server error "
                        "(outbox_status tells the error)")
    health = Health(problems, readings)
    if conf.value("CLICKHOUSE_OUTBOX_HEALTH_CHECKS_CLICKHOUSE") if check_clickhouse is None else check_clickhouse:
        error = ping()
        health.clickhouse = "answering" if error is None else "not answering"
        if error is not None:
            problems.append(f"ClickHouse did not answer SELECT 1: {error}")
    return health


def ping():
    """None if ClickHouse answers SELECT 1, else the last line of what went wrong (no secret in it)."""
    try:
        get_backend().query("SELECT 1 AS one")
    except Exception as exc:  # pylint: disable=broad-except  # any failure is the answer, said without a traceback
        return withheld(last_line(str(exc)) or type(exc).__name__)
    return None


def withheld(text):
    """`text` without the configured ClickHouse password, should anything have quoted it."""
    config = conf.backend_config()
    password = config.get("password") if isinstance(config, dict) else None
    if isinstance(password, str) and password:
        text = text.replace(password, "[withheld]")
    return text
