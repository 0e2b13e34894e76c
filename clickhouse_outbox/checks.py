"""
Django system checks: a bad configuration stops start-up with a message saying how to fix it.
"""

import re
from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register  # noqa: A004 (Django's check message)
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from clickhouse_outbox import conf
from clickhouse_outbox.clickhouse.backends import configured_urls, insert_quorum, validate_config

SETTING = "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG"
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@register(Tags.compatibility)
def check_backend_config(app_configs=None, **kwargs):
    config = conf.backend_config()
    errors = []
    entries = [(f"{SETTING}['url']", str(config.get("url") or ""))]
    if config.get("urls") is not None:
        try:
            entries = configured_urls(config)
        except ImproperlyConfigured as exc:
            errors.append(Error(
                str(exc),
                hint="Give one server as 'url', or the replicas of one shard as 'urls' (a list, or a "
                     "comma-separated string of http(s) URLs).",
                id="clickhouse_outbox.E007",
            ))
            entries = []
    for label, url in entries:
        errors.extend(url_errors(label, url))
    if not IDENTIFIER.match(str(config.get("database") or "")):
        errors.append(Error(
            f"{SETTING}['database'] must be a plain ClickHouse database name.",
            hint="Letters, digits and underscores, e.g. event_sink.",
            id="clickhouse_outbox.E004",
        ))
    for key in ("timeout_secs", "connect_timeout_secs"):
        if not positive_number(config.get(key)):
            errors.append(Error(
                f"{SETTING}[{key!r}] must be a number of seconds greater than 0.",
                hint="The defaults are 5 (timeout_secs, read) and 3 (connect_timeout_secs).",
                id="clickhouse_outbox.E005",
            ))
    try:
        insert_quorum(config)
    except ImproperlyConfigured as exc:
        errors.append(Error(
            str(exc),
            hint="insert_quorum = 2 acknowledges an insert once two replicas have it.",
            id="clickhouse_outbox.E008",
        ))
    if not errors:
        try:
            validate_config(config)  # the backend's own rules, so a check never passes what a drain rejects
        except ImproperlyConfigured as exc:
            errors.append(Error(str(exc), id="clickhouse_outbox.E006"))
    return errors


def url_errors(label, url):
    """What is wrong with one configured URL (`label` names it; the URL is never repeated)."""
    errors = []
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "chdb"):
        errors.append(Error(
            f"{label} must start with http://, https:// or chdb:///, not {parts.scheme or 'nothing'!r}.",
            hint="Use the address of ClickHouse's HTTP interface, e.g. http://clickhouse:8123.",
            id="clickhouse_outbox.E001",
        ))
    if parts.username or parts.password:
        errors.append(Error(
            f"{label} contains credentials.",
            hint="Remove them from the URL and set the 'username' and 'password' keys instead.",
            id="clickhouse_outbox.E002",
        ))
    if parts.scheme == "chdb" and (parts.netloc or not parts.path.startswith("/")):
        errors.append(Error(
            f"{label} must name an absolute path for the embedded engine.",
            hint="Write chdb:///absolute/path/to/store (three slashes).",
            id="clickhouse_outbox.E003",
        ))
    return errors


def positive_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


RANGES = {
    "CLICKHOUSE_OUTBOX_BATCH_ROWS": (1, 1_000_000, "rows per INSERT; ClickHouse writes up to 1,048,576 rows as one block"),
    "CLICKHOUSE_OUTBOX_ENTRY_MAX_BYTES": (1024, 64 * 1024 * 1024, "bytes per outbox row"),
    "CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS": (1, 86400, "seconds between beat runs; django-celery-beat counts whole seconds"),
    "CLICKHOUSE_OUTBOX_DRAIN_MAX_SECS": (0.1, 86400, "seconds per drain run"),
    "CLICKHOUSE_OUTBOX_LEASE_SECS": (1, 86400, "seconds a claim lasts"),
    "CLICKHOUSE_OUTBOX_MAX_ATTEMPTS": (1, 1000, "sends before a batch fails"),
    "CLICKHOUSE_OUTBOX_BACKOFF_BASE_SECS": (0, 86400, "seconds before the first retry"),
    "CLICKHOUSE_OUTBOX_BACKOFF_MAX_SECS": (0, 7 * 86400, "longest retry delay in seconds"),
    "CLICKHOUSE_OUTBOX_RETENTION_DAYS": (0, 3650, "days sent rows are kept"),
    "CLICKHOUSE_OUTBOX_DUMP_CHUNK_COURSES": (1, 10_000, "courses a dump worker claims at a time"),
    "CLICKHOUSE_OUTBOX_DUMP_CHUNK_ROWS": (1, 100_000, "enrollments, profiles, tags... a dump worker claims at a time"),
    "CLICKHOUSE_OUTBOX_VERIFY_CHUNK": (1, 100_000, "subjects a verification compares with a few queries"),
    "CLICKHOUSE_OUTBOX_VERIFY_INTERVAL_SECS": (0, 30 * 86400, "seconds between periodic verifications; 0 for none"),
    "CLICKHOUSE_OUTBOX_STATUS_MAX_AGE_SECS": (1, 30 * 86400, "seconds the oldest unsent row may wait"),
    "CLICKHOUSE_OUTBOX_DRAIN_THREADS": (1, 16, "batches one drain run sends at once"),
}


@register(Tags.compatibility)
def check_outbox_settings(app_configs=None, **kwargs):
    errors = []
    for name, (low, high, what) in RANGES.items():
        value = conf.get(name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
            errors.append(Error(
                f"{name} is {value!r}; it must be a number from {low} to {high} ({what}).",
                hint=f"Remove it to use the default, {conf.DEFAULTS[name]!r}.",
                id="clickhouse_outbox.E010",
            ))
    if errors:
        return errors
    config = conf.backend_config()
    if positive_number(config.get("timeout_secs")) and positive_number(config.get("connect_timeout_secs")):
        replicas = replica_count(config)
        if conf.lease_secs() <= replicas * (config["timeout_secs"] + config["connect_timeout_secs"]):
            errors.append(Error(
                "CLICKHOUSE_OUTBOX_LEASE_SECS must be longer than the ClickHouse connect + read timeouts"
                + (f", times the {replicas} replicas a send may try in turn." if replicas > 1 else "."),
                hint="Otherwise a slow but live send loses its batch to another drainer; raise the lease.",
                id="clickhouse_outbox.E011",
            ))
    if not isinstance(conf.claim_locks(), bool):
        errors.append(Error(
            f"CLICKHOUSE_OUTBOX_CLAIM_LOCKS is {conf.claim_locks()!r}; it must be True or False.",
            hint="True (the default): a dead drainer's claims are taken again at once; False: after their lease.",
            id="clickhouse_outbox.E014",
        ))
    if conf.snapshot_at() not in conf.SNAPSHOT_AT_CHOICES:
        errors.append(Error(
            f"CLICKHOUSE_OUTBOX_SNAPSHOT_AT is {conf.snapshot_at()!r}; it must be \"publish\" or \"drain\".",
            hint='"publish" (the default) takes the snapshot in the publish; "drain" only requests it there.',
            id="clickhouse_outbox.E013",
        ))
    if conf.backoff_max_secs() < conf.backoff_base_secs():
        errors.append(Error(
            "CLICKHOUSE_OUTBOX_BACKOFF_MAX_SECS is smaller than CLICKHOUSE_OUTBOX_BACKOFF_BASE_SECS.",
            hint="Make the cap at least the base delay.",
            id="clickhouse_outbox.E012",
        ))
    return errors


def replica_count(config):
    """How many servers one send may try (the `urls`; 1 when they are malformed: E007 says so)."""
    try:
        return len(configured_urls(config))
    except ImproperlyConfigured:
        return 1


@register(Tags.compatibility)
def check_course_source(app_configs=None, **kwargs):
    path = conf.course_source_path()
    if path.endswith(".ModulestoreSource"):
        return []  # imports edx-platform lazily, only when a course is read
    try:
        source_class = import_string(path)
    except ImportError as exc:
        return [Error(
            f"CLICKHOUSE_OUTBOX_COURSE_SOURCE {path!r} cannot be imported: {exc}",
            hint="Name a class such as clickhouse_outbox.sources.olx.OlxFolderSource.",
            id="clickhouse_outbox.E020",
        )]
    if source_class.__name__ == "OlxFolderSource" and not conf.olx_dir():
        return [Error(
            "CLICKHOUSE_OUTBOX_OLX_DIR is empty, and the OLX course source needs a folder.",
            hint="Set it to the folder that holds (or will hold) the OLX course exports.",
            id="clickhouse_outbox.E021",
        )]
    return []


@register(Tags.compatibility)
def check_producers(app_configs=None, **kwargs):
    """Each producer's switch, the PII tables, and sinks of platform-plugin-aspects writing the same tables."""
    from clickhouse_outbox.clickhouse.tables import all_tables  # noqa: PLC0415 (checks load before the producers)
    from clickhouse_outbox.outbox import producers  # noqa: PLC0415
    from clickhouse_outbox.outbox.deletes import RETIREMENT, RETIREMENT_PEER_MODEL  # noqa: PLC0415

    errors = []
    for name in (*producers.names(), RETIREMENT):
        setting = conf.producer_setting_name(name)
        value = getattr(settings, setting, None)
        if value is not None and not isinstance(value, bool):
            errors.append(Error(
                f"{setting} is {value!r}; it must be True, False or None.",
                hint="None (or leaving it out) follows platform-plugin-aspects' switch for the same data.",
                id="clickhouse_outbox.E030",
            ))
    pii = getattr(settings, "EVENT_SINK_CLICKHOUSE_PII_MODELS", None)
    if pii is not None and (not isinstance(pii, (list, tuple)) or not all(isinstance(name, str) for name in pii)):
        errors.append(Error(
            f"EVENT_SINK_CLICKHOUSE_PII_MODELS is {pii!r}; it must be a list of table names.",
            hint='platform-plugin-aspects\' default is ["user_profile", "external_id"].',
            id="clickhouse_outbox.E031",
        ))
    else:
        known = {table.name for table in all_tables()} | {RETIREMENT_PEER_MODEL}
        for name in conf.pii_tables():
            if name not in known:
                errors.append(Warning(
                    f"EVENT_SINK_CLICKHOUSE_PII_MODELS names {name!r}, which is not a table the outbox writes.",
                    hint=f"A retirement deletes from the tables it names that are: {', '.join(sorted(known - {RETIREMENT_PEER_MODEL}))}.",
                    id="clickhouse_outbox.W032",
                ))
    peer_installed = apps.is_installed("platform_plugin_aspects")
    for producer in producers.all_producers():
        if not producer.enabled:
            continue
        peer_setting = conf.peer_setting_name(producer.peer_model)
        if peer_installed and getattr(settings, peer_setting, False):
            errors.append(Warning(
                f"The {producer.name} producer is on, and so is platform-plugin-aspects' sink for the same table "
                f"({peer_setting}): each change is written twice.",
                hint=f"Set {peer_setting} = False and {conf.producer_setting_name(producer.name)} = True "
                     "(the Tutor plugin does both).",
                id="clickhouse_outbox.W033",
            ))
        installed = getattr(producer, "installed", None)
        if installed is not None and not installed():
            errors.append(Warning(
                f"The {producer.name} producer is on, but the model it reads ({producer.model_name}) is not installed "
                "here, so it queues nothing.",
                hint="Point EVENT_SINK_CLICKHOUSE_MODEL_CONFIG at the model, or turn the producer off with "
                     f"{conf.producer_setting_name(producer.name)} = False.",
                id="clickhouse_outbox.W034",
            ))
    return errors
