"""
The plugin's settings, each declared once: name, default, type, range and what it means.

Everything else comes from this table: the defaults installed in edx-platform
(settings/common.py), the reads with their casts (`conf.value`), the system checks
(`conf.problems`), the setting annotations (scripts/settings-docs), the docs' settings reference,
and the Tutor plugin's defaults. It imports nothing, not even Django: Tutor loads it.

To add a setting: one `Setting(...)` below, then `scripts/settings-docs --write`.
"""

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """What is wrong with a setting, for a system check: its id, a message and how to fix it."""

    id: str
    message: str
    hint: str = ""

    @property
    def is_warning(self):
        return ".W" in self.id

    def __str__(self):
        return f"{self.message} {self.hint}".strip()


@dataclass(frozen=True)
class Setting:
    """
    One setting: `type` is bool, int, float or str; numbers lie in [low, high]; `choices`, when
    given, are the only values; `none_is_default` reads None as the default (an unset folder); a
    `secret` one's value is never shown in a message (a token).
    """

    name: str
    default: object
    type: type
    low: float = None
    high: float = None
    doc: str = ""
    choices: tuple = ()
    none_is_default: bool = False
    secret: bool = False
    id: str = field(init=False)

    def __post_init__(self):
        ids = {bool: "E014", str: "E014", int: "E010", float: "E010"}
        object.__setattr__(self, "id", "clickhouse_outbox." + ("E013" if self.choices else ids[self.type]))
        if self.problem(self.default) is not None:
            raise ValueError(f"{self.name}: its default is not valid")

    def problem(self, value):
        """The Problem with `value` for this setting, or None when it is valid."""
        if value is None and self.none_is_default:
            return None
        if self.choices:
            if value in self.choices and isinstance(value, type(self.default)):
                return None
            wanted = " or ".join(f'"{choice}"' for choice in self.choices)
        elif self.type is bool:
            if isinstance(value, bool):
                return None
            wanted = "True or False"
        elif self.type is str:
            if isinstance(value, str):
                return None
            wanted = "a string"
        else:
            if is_number(value, whole=self.type is int) and self.low <= value <= self.high:
                return None
            wanted = f"{'a whole number' if self.type is int else 'a number'} from {number(self.low)} to {number(self.high)}"
        return Problem(
            self.id,
            f"{self.name} is {f'of type {type(value).__name__}' if self.secret else shown(value)}; it must be {wanted}.",
            f"Remove it to use the default, {shown(self.default)}.",
        )

    def cast(self, value):
        """A valid `value` as the type the code reads (an int setting given 300.0 reads 300)."""
        if value is None and self.none_is_default:
            return self.default
        return self.type(value)


def is_number(value, *, whole=False):
    """An int or float (not a bool, not NaN); with `whole`, one without a fractional part."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return False
    return not whole or isinstance(value, int) or value.is_integer()


def number(value):
    return str(int(value)) if float(value).is_integer() else repr(value)


def shown(value, limit=80):
    """`value` as a Python literal for a message, cut at `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…"


DAY = 86400

SETTINGS = (
    Setting("CLICKHOUSE_OUTBOX_ENABLED", True, bool, doc=(
        "Whether changes queue snapshots, for every producer. Draining is not affected. Forced to ``False`` in "
        "edx-platform's own test settings.")),
    Setting("CLICKHOUSE_OUTBOX_COURSE_SOURCE", "clickhouse_outbox.sources.modulestore.ModulestoreSource", str, doc=(
        "Dotted path of the class that reads published courses: the modulestore in the CMS; the standalone "
        "project uses ``clickhouse_outbox.sources.olx.OlxFolderSource``.")),
    Setting("CLICKHOUSE_OUTBOX_OLX_DIR", "", str, none_is_default=True, doc=(
        "Folder of OLX exports read by ``OlxFolderSource`` (required with it).")),
    Setting("CLICKHOUSE_OUTBOX_OLX_MAX_FILE_BYTES", 16 * 1024 * 1024, int, 64 * 1024, 1024**3, doc=(
        "Largest OLX file (XML, policy JSON, ``about/effort.html``) the OLX reader opens; a larger one is "
        "refused, naming the file, before it is parsed (Python 3.11's expat is quadratic on huge attribute "
        "values). Studio's files are a few MB at most.")),
    Setting("CLICKHOUSE_OUTBOX_OLX_MAX_VALUE_BYTES", 4 * 1024 * 1024, int, 1024, 1024**3, doc=(
        "Largest attribute value or element text (UTF-8 bytes) in an OLX file; a larger one is refused, "
        "naming the file, the element and the attribute.")),
    Setting("CLICKHOUSE_OUTBOX_OLX_MAX_DEPTH", 200, int, 8, 500, doc=(
        "Deepest nesting of XML elements in an OLX file, and of values in its policy JSON files; deeper is "
        "refused, naming the file. Python's recursion limit caps it.")),
    Setting("CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_BYTES", 2 * 1024**3, int, 1, 1024**4, doc=(
        "Most bytes of one OLX export: what a ``.tar.gz`` extracts to (static assets included), what adding a "
        "folder copies, and what the reader reads. Refused beyond it, naming the member or file, before it is "
        "written.")),
    Setting("CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_FILES", 100_000, int, 1, 10_000_000, doc=(
        "Most files (tarball members) of one OLX export, counted like ``CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_BYTES``. "
        "A 10,000-block course has about 20,000.")),
    Setting("CLICKHOUSE_OUTBOX_OLX_MAX_BLOCKS", 100_000, int, 10, 10_000_000, doc=(
        "Most blocks of one course read from OLX (inline blocks need no file of their own, so the file bound "
        "does not count them).")),
    Setting("CLICKHOUSE_OUTBOX_BATCH_ROWS", 200_000, int, 1, 1_000_000, doc=(
        "Most rows sent in one INSERT (one batch; a batch also holds at most 1,000 entries, so one-row changes "
        "go 1,000 at a time). At most 1,000,000, so ClickHouse writes a batch as one block, all or nothing. "
        "The learner tables are partitioned by ``user_id % 100``: every INSERT into them writes a part in "
        "up to 100 partitions, so a backfill's chunks cost ClickHouse less in fewer, larger INSERTs; while a "
        "dump job queues a table, its rows wait for a full batch or the end of the table.")),
    Setting("CLICKHOUSE_OUTBOX_ENTRY_MAX_BYTES", 1_048_576, int, 1024, 64 * 1024 * 1024, doc=(
        "Largest payload of one outbox row; a snapshot's rows for a table are split above it. Keep it well "
        "under the database's ``max_allowed_packet``.")),
    Setting("CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS", 10, float, 1, DAY, doc=(
        "How often celery beat runs the drain task (django-celery-beat counts whole seconds), and the default "
        "``--loop`` interval. The Tutor plugin's default too.")),
    Setting("CLICKHOUSE_OUTBOX_DRAIN_MAX_SECS", 50, float, 0.1, DAY, doc=(
        "How long one drain run may keep claiming batches.")),
    Setting("CLICKHOUSE_OUTBOX_LEASE_SECS", 300, int, 1, DAY, doc=(
        "How long a claimed batch belongs to its drainer at most; after that another drainer takes it, even "
        "from a drainer that still runs (it hangs). A drainer that died is found sooner, by its lock "
        "(``CLICKHOUSE_OUTBOX_CLAIM_LOCKS``). Must exceed ``timeout_secs`` + ``connect_timeout_secs``, times "
        "the replicas a send may try.")),
    Setting("CLICKHOUSE_OUTBOX_CLAIM_LOCKS", True, bool, doc=(
        "Whether each drain run and dump worker holds a database lock for as long as it runs (PostgreSQL: an "
        "advisory lock; MySQL/MariaDB: ``GET_LOCK``; SQLite: a locked file beside the database file), named by "
        "what it claims: when its process dies, the database drops the lock and the next claim takes its "
        "batches, requested snapshots and dump subjects at once instead of after "
        "``CLICKHOUSE_OUTBOX_LEASE_SECS``. ``False`` where a lock may not follow its session: a multi-primary "
        "cluster (Galera is detected and left to leases on its own) or a pooler in transaction mode "
        "(PgBouncer); claims are then freed by their lease only.")),
    Setting("CLICKHOUSE_OUTBOX_MAX_ATTEMPTS", 12, int, 1, 1000, doc=(
        "Sends of a batch before it is marked ``failed``; it then waits for a requeue, or is purged after "
        "``CLICKHOUSE_OUTBOX_FAILED_RETENTION_DAYS``.")),
    Setting("CLICKHOUSE_OUTBOX_BACKOFF_BASE_SECS", 5, float, 0, DAY, doc=(
        "First retry delay; it doubles with each attempt, with jitter.")),
    Setting("CLICKHOUSE_OUTBOX_BACKOFF_MAX_SECS", 3600, float, 0, 7 * DAY, doc=(
        "Longest retry delay; at least ``CLICKHOUSE_OUTBOX_BACKOFF_BASE_SECS``.")),
    Setting("CLICKHOUSE_OUTBOX_RETENTION_DAYS", 7, float, 0, 3650, doc=(
        "How long sent rows stay in the outbox before they are purged; rows that will never be sent "
        "(superseded by a newer change, removed by a retirement or a delete, split into smaller batches) go as "
        "long after they were queued, and so do old snapshots with no rows left (each subject keeps its latest) "
        "and the subjects of finished dump jobs (and the jobs, but for the latest of each action). Unsent rows "
        "never go by age, except those of failed batches (``CLICKHOUSE_OUTBOX_FAILED_RETENTION_DAYS``).")),
    Setting("CLICKHOUSE_OUTBOX_FAILED_RETENTION_DAYS", 30, float, 0, 3650, doc=(
        "How long a failed batch (rows ClickHouse rejected for good, or that ran out of attempts) waits for a "
        "requeue before its rows are purged, each purge logged as a WARNING (table, rows, batch id, how long "
        "ago it failed; no row data). Its snapshots are marked \"rejected\"; a verification reports the missing "
        "rows. Failed deletes (a retirement's) are never purged.")),
    Setting("CLICKHOUSE_OUTBOX_DUMP_CHUNK_COURSES", 20, int, 1, 10_000, doc=(
        "Courses a dump job's worker claims at a time. A worker killed mid-chunk leaves at most this many "
        "courses to be read again by the next worker.")),
    Setting("CLICKHOUSE_OUTBOX_DUMP_CHUNK_ROWS", 1000, int, 1, 100_000, doc=(
        "Enrollments, profiles, external ids or tags a dump job's worker claims, reads (one query) and queues "
        "(one transaction) at a time.")),
    Setting("CLICKHOUSE_OUTBOX_BACKFILL_CHUNK_ROWS", 20_000, int, 1, 200_000, doc=(
        "Rows of a whole-table dump of enrollments, profiles or external ids read (one query, by key range), "
        "queued (one outbox entry, compressed) and sent (one INSERT) at a time. Its compressed rows (about "
        "100 bytes each) must fit in the database's ``max_allowed_packet``.")),
    Setting("CLICKHOUSE_OUTBOX_VERIFY_CHUNK", 1000, int, 1, 100_000, doc=(
        "Subjects a verification compares at once: one aggregate query per table (and replica) for each "
        "chunk.")),
    Setting("CLICKHOUSE_OUTBOX_VERIFY_INTERVAL_SECS", 0, float, 0, 30 * DAY, doc=(
        "Seconds between periodic verifications of every producer that is on (a beat entry, "
        "``clickhouse_outbox.verify``, installed by the plugin's settings); 0, the default, for none. What one "
        "finds makes ``outbox_status`` exit 1 until repaired. Daily (``86400``) suits most sites.")),
    Setting("CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS", 0, float, 0, 30 * DAY, doc=(
        "Seconds between sweeps of the learner and tag tables (a beat entry, ``clickhouse_outbox.sweep``, "
        "installed by the plugin's settings); 0, the default, for none (the Tutor plugin turns it on, every 300 "
        "s). A sweep reads each table by ranges of primary keys and queues every row that differs from its "
        "latest snapshot: rows written by ``bulk_create``, ``QuerySet.update()`` or raw SQL, which send no "
        "signal. ``manage.py outbox_sweep`` runs one by hand (cron).")),
    Setting("CLICKHOUSE_OUTBOX_SWEEP_CHUNK", 5000, int, 100, 100_000, doc=(
        "Primary keys a sweep reads at once (one query per range), and the size of the ranges whose digests it "
        "keeps (each row's too: 16 bytes a row); a whole-table dump records the ranges it queues on the same grid. "
        "Changed, every range is compared once more.")),
    Setting("CLICKHOUSE_OUTBOX_STATUS_MAX_AGE_SECS", 900, float, 1, 30 * DAY, doc=(
        "The default ``--max-age`` of ``outbox_status`` and ``outbox_drain``: when the oldest unsent row has waited "
        "longer, they exit with status 2 (delivery is stuck).")),
    Setting("CLICKHOUSE_OUTBOX_SNAPSHOT_AT", "publish", str, choices=("publish", "drain"), doc=(
        'When a published course is read and serialized. ``"publish"``: in the publish\'s transaction, so its '
        'rows are queued when the publish commits. ``"drain"``: the publish writes only a small *snapshot requested* '
        "row (about a millisecond whatever the course's size) and the drain reads the course later; for very "
        "large courses.")),
    Setting("CLICKHOUSE_OUTBOX_DRAIN_THREADS", 1, int, 1, 16, doc=(
        "Batches one drain run (the celery task, ``outbox_drain``) claims and sends at once, each from a thread "
        "with its own database connection. With 2, ClickHouse parses one batch while the next is read: a "
        "backlog drains faster.")),
    Setting("CLICKHOUSE_OUTBOX_FILL_THREADS", 2, int, 1, 16, doc=(
        "Loops of a drain run that fill deferred learner requests (``SNAPSHOT_AT = \"drain\"``) at once, each "
        "from a thread with its own database connection (at least ``CLICKHOUSE_OUTBOX_DRAIN_THREADS``): while "
        "the database writes one chunk, the next is read and encoded. Only where the database skips locked rows "
        "(MySQL 8, MariaDB 10.6, PostgreSQL) and the drain is not called inside a transaction (another "
        "connection would not see its requests); one loop otherwise, and on SQLite.")),
    Setting("CLICKHOUSE_OUTBOX_MONITORING_TOKEN", "", str, secret=True, doc=(
        "A token that opens the metrics (``/clickhouse_outbox/metrics``) and health (``/clickhouse_outbox/health``) "
        "endpoints to a caller that is not signed-in staff: sent as ``Authorization: Bearer <token>`` (never in "
        "the URL), compared in constant time. Empty, the default: staff only. Use 32 random characters or more; "
        "it is never shown or logged.")),
    Setting("CLICKHOUSE_OUTBOX_HEALTH_MAX_FAILED_BATCHES", 0, int, 0, 1_000_000, doc=(
        "The health endpoint answers 503 when more batches than this have failed for good (inserts or deletes). "
        "Its other limit is ``CLICKHOUSE_OUTBOX_STATUS_MAX_AGE_SECS``, the age of the oldest unsent row.")),
    Setting("CLICKHOUSE_OUTBOX_HEALTH_CHECKS_CLICKHOUSE", False, bool, doc=(
        "Whether the health endpoint also asks ClickHouse for ``SELECT 1`` (through each configured replica's "
        "connection, with its timeouts) and answers 503 when it cannot. Off, it sees ClickHouse failing only "
        "through a batch waiting after a server error.")),
    Setting("CLICKHOUSE_OUTBOX_METRICS_WINDOW_SECS", 300, float, 10, DAY, doc=(
        "The window of the recent-delivery metrics: rows and batches sent, and their delivery latency (from "
        "the oldest row's queueing to ClickHouse's acknowledgment), over the last this many seconds.")),
    Setting("CLICKHOUSE_OUTBOX_STATSD_HOST", "", str, doc=(
        "A StatsD (or Telegraf, Datadog agent) host the drain task sends its gauges and counters to, over UDP, "
        "after each run. Empty, the default: none are sent.")),
    Setting("CLICKHOUSE_OUTBOX_STATSD_PORT", 8125, int, 1, 65535, doc=(
        "The StatsD host's UDP port.")),
    Setting("CLICKHOUSE_OUTBOX_STATSD_PREFIX", "clickhouse_outbox", str, doc=(
        "The prefix of every StatsD metric's name.")),
)

BY_NAME = {setting.name: setting for setting in SETTINGS}


def problems(values):
    """
    Every Problem of `values` ({name: value}, a missing name taking its default): each setting
    alone, then the rules between settings.
    """
    found = []
    for setting in SETTINGS:
        problem = setting.problem(values.get(setting.name, setting.default))
        if problem is not None:
            found.append(problem)
    if not found:
        base = values.get("CLICKHOUSE_OUTBOX_BACKOFF_BASE_SECS", BY_NAME["CLICKHOUSE_OUTBOX_BACKOFF_BASE_SECS"].default)
        cap = values.get("CLICKHOUSE_OUTBOX_BACKOFF_MAX_SECS", BY_NAME["CLICKHOUSE_OUTBOX_BACKOFF_MAX_SECS"].default)
        if cap < base:
            found.append(Problem(
                "clickhouse_outbox.E012",
                "CLICKHOUSE_OUTBOX_BACKOFF_MAX_SECS is smaller than CLICKHOUSE_OUTBOX_BACKOFF_BASE_SECS.",
                "Make the cap at least the base delay.",
            ))
    return found


@dataclass(frozen=True)
class BackendKey:
    """One key of EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG: a default of None means unset."""

    name: str
    default: object
    doc: str


BACKEND_SETTING = "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG"

BACKEND_KEYS = (
    BackendKey("url", "http://clickhouse:8123", (
        "``http(s)://host:port`` of ClickHouse's HTTP interface (a path prefix allowed), without credentials, "
        "query string or fragment; or ``chdb:///absolute/path`` for the embedded engine (``pip install "
        "clickhouse-outbox[embedded]``; demo and tests, not production).")),
    BackendKey("username", "ch_cms", (
        "ClickHouse user; empty for ClickHouse's default user. Any characters but a colon and control "
        "characters.")),
    BackendKey("password", "", (
        "Its password, any characters (sent exactly, UTF-8, in HTTP basic authentication: never in the URL; "
        "never logged, shown or put in an error message). A string: quote a numeric one in YAML.")),
    BackendKey("database", "event_sink", (
        "Destination database: a plain identifier (letters, digits and underscores, not starting with a "
        "digit).")),
    BackendKey("timeout_secs", 5, "Read timeout of each request, in seconds: a number above 0."),
    BackendKey("connect_timeout_secs", 3, "Connect timeout, in seconds: a number above 0."),
    BackendKey("urls", None, (
        "Instead of ``url``: the ``http(s)://host:port`` of each replica of one shard, as a list or a comma-separated "
        "string (as Tutor and environment variables give). A request goes to the replica that last answered, "
        "and to the next one when that one is unreachable. Each entry follows ``url``'s rules; chdb URLs cannot "
        "be listed; ``url`` may stay set if it is one of them.")),
    BackendKey("insert_quorum", None, (
        "A whole number of replicas, at least 2: ClickHouse acknowledges an insert only once that many "
        "replicas have the rows (``insert_quorum_timeout``: three quarters of ``timeout_secs``).")),
)

DEFAULT_BACKEND_CONFIG = {key.name: key.default for key in BACKEND_KEYS if key.default is not None}
