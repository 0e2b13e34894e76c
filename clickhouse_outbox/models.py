"""
The outbox: snapshots taken when something changes, the encoded rows (or deletes) they
queue, and the batches that carry them to ClickHouse.

A change (a course published, an enrollment, a profile saved, a tag deleted) writes one
`Snapshot` and a handful of `OutboxEntry` rows (one per destination table, split when
large) in the change's own transaction. Each entry holds its rows already encoded as
JSONEachRow lines, or, for a delete, the rows to delete. A drainer claims pending entries
into a `Batch`: the unit that is sent as one INSERT (or one ALTER TABLE ... DELETE),
retried with the same membership, order and deduplication token, and finalised as sent
or failed.
"""

import uuid
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import models
from django.utils import timezone

from clickhouse_outbox import conf
from clickhouse_outbox.outbox import registry
from clickhouse_outbox.serializers.payloads import decompress


class Snapshot(models.Model):
    """
    One reading of a subject (a course, an enrollment, a user's profile, a tag) taken for
    the outbox by its producer (`outbox.registry`), or one deletion of it.

    `dump_id` and `time_last_dumped` are fixed here, so every resend of the snapshot's
    rows is byte-identical. A snapshot that could not be taken is kept with status
    `failed` and the error, so the change is not lost: a requeue takes it again. With
    CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain" a change writes only a `requested` snapshot; a
    drainer takes it later (under a lease) and fills in its rows. A snapshot whose rows a
    retirement or a delete removed from the outbox is `deleted`; one whose rows ClickHouse
    rejected for good, and that were purged (CLICKHOUSE_OUTBOX_FAILED_RETENTION_DAYS), `rejected`.
    Old snapshots with no rows left are purged (`outbox.purge`), except each subject's
    latest, failed ones and requests not taken yet.

    .. pii: `user_id` names the user whose personal data the snapshot's rows hold (every
       snapshot of a producer of personal data has it, failed ones included); `subject` is a
       row id (a profile, an enrollment, an external id) or, for a retirement, a user id.
       `error` (a failed snapshot's traceback) may quote the data that could not be
       serialized. A retirement empties `error` and `digest` of every snapshot of the user
       (their rows go from OutboxEntry); ids stay: the user's `deleted` snapshots, until
       purged (a subject's latest stays), and the retirement's own snapshot, kept for good
       so that nothing of theirs is queued again.
    .. pii_types: id
    .. pii_retirement: local_api (retained: ids; `error` and `digest` emptied by outbox.deletes)
    """

    class Status(models.TextChoices):
        REQUESTED = "requested", "Requested: taken at the next drain"
        QUEUED = "queued", "Queued"
        FAILED = "failed", "Could not be taken"
        SUPERSEDED = "superseded", "Superseded by a newer snapshot"
        DISMISSED = "dismissed", "Dismissed: the source does not know the subject"
        DELETED = "deleted", "Deleted: its rows were removed (a retired user, a deleted subject)"
        REJECTED = "rejected", "Rejected: ClickHouse refused rows of it for good; they were purged"

    producer = models.CharField(max_length=64, help_text="What produced the rows, e.g. course_structure.")
    subject = models.CharField(max_length=255, help_text="What the rows describe, e.g. a course key.")
    user_id = models.BigIntegerField(
        null=True, blank=True,
        help_text="The user whose personal data the rows hold, for retirement (producers of personal data).",
    )
    reason = models.CharField(max_length=64, blank=True, help_text="Why it was taken: published, imported, ...")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    dump_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    time_last_dumped = models.CharField(max_length=40, blank=True)
    row_count = models.PositiveIntegerField(default=0)
    table_rows = models.JSONField(
        default=dict, blank=True, help_text="Rows per table: what ClickHouse holds for this dump_id once delivered."
    )
    digest = models.CharField(
        max_length=32, blank=True, editable=False,
        help_text="Of its rows without dump_id and time_last_dumped: a signal's snapshot with the same rows adds nothing.",
    )
    error = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now, editable=False)
    # A requested snapshot (CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain") being taken by a drainer.
    lease_owner = models.UUIDField(null=True, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["producer", "subject", "-id"], name="ch_outbox_snapshot_subject"),
            models.Index(fields=["status", "id"], name="ch_outbox_snapshot_status"),
            models.Index(fields=["user_id"], name="ch_outbox_snapshot_user"),
        ]
        ordering = ["-id"]
        permissions = [
            ("requeue_course", "Can requeue courses and other subjects (take a new snapshot)"),
            ("dismiss_snapshot", "Can dismiss failed snapshots of unknown courses"),
        ]

    def __str__(self):
        return f"{self.producer} {self.subject} ({self.status}, {self.dump_id})"


class Kind(models.TextChoices):
    """What an entry, and the batch that carries it, does to its table."""

    INSERT = "insert", "Insert"
    DELETE = "delete", "Delete"


class Batch(models.Model):
    """
    Entries claimed together and sent to one table as one INSERT (or, for deletes, one
    ALTER TABLE ... DELETE).

    Its membership and order never change once claimed, so a retry sends the same bytes
    with the same `token` (ClickHouse's insert_deduplication_token); only a retirement
    takes a user's rows out of it (see outbox.deletes). A claim is a lease that expires
    at `lease_expires_at` (database time): a dead drainer's batch comes back.

    .. pii: `last_error` is ClickHouse's message, which may quote a row it rejected. For a
       table of personal data the quoted text is withheld before it is stored or logged
       (clickhouse.errors.withhold_row_text), and a retirement replaces `last_error` with a
       note on every batch that carried the user's rows and the batches those were split
       from. A batch goes CLICKHOUSE_OUTBOX_RETENTION_DAYS after it was sent (or split), a
       failed one CLICKHOUSE_OUTBOX_FAILED_RETENTION_DAYS after it failed.
    .. pii_types: other
    .. pii_retirement: local_api (outbox.deletes)
    """

    class Status(models.TextChoices):
        CLAIMED = "claimed", "Claimed by a drainer"
        RETRY = "retry", "Waiting to be retried"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SPLIT = "split", "Split to isolate rejected rows"

    table = models.CharField(max_length=128)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.INSERT)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CLAIMED)
    token = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    row_count = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0, help_text="Sends started, including ones whose drainer died.")
    attempts_at_requeue = models.PositiveIntegerField(
        default=0,
        help_text="`attempts` when staff last retried the batch by hand; CLICKHOUSE_OUTBOX_MAX_ATTEMPTS counts from here.",
    )
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.UUIDField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_code = models.IntegerField(null=True, blank=True, help_text="ClickHouse's error code.")
    server_error = models.BooleanField(
        default=False,
        help_text="The last failure was the server's (unreachable, overloaded, credentials), not this batch's rows.",
    )
    created = models.DateTimeField(default=timezone.now, editable=False)
    sent_at = models.DateTimeField(null=True, blank=True)
    split_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False,
        help_text="The batch ClickHouse rejected that this one holds part of.",
    )

    class Meta:
        verbose_name_plural = "batches"
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="ch_outbox_batch_due"),
            models.Index(fields=["status", "lease_expires_at"], name="ch_outbox_batch_lease"),
            models.Index(fields=["status", "sent_at"], name="ch_outbox_batch_sent"),
            models.Index(fields=["status", "server_error"], name="ch_outbox_batch_server_error"),
        ]
        ordering = ["-id"]
        permissions = [("retry_batch", "Can retry batches now")]

    def __str__(self):
        return f"batch {self.pk} → {self.table} ({self.status}, {self.row_count} rows)"

    @property
    def attempts_left(self):
        """Sends left before the batch fails for good, counted since it was last retried by hand."""
        return max(conf.max_attempts() - (self.attempts - self.attempts_at_requeue), 0)


class OutboxEntry(models.Model):
    """
    Rows for one destination table, waiting to be sent: to insert, encoded as JSONEachRow
    lines; or (`kind` delete) to delete, as JSON {"column": ..., "values": [...]}.

    `payload` is binary: the lines as one gzip member (`encoding` "gzip", see
    `serializers.payloads`), or raw (entries written before payloads were compressed, and
    deletes). The bytes go to ClickHouse exactly as stored.

    .. pii: The payloads of the producers of personal data (user_profile, external_id and
       course_enrollment: every producer whose table says `personal_data`) hold users'
       personal data. A retirement empties every payload of the user's rows, whatever its
       status (pending, in a batch, sent, superseded, split, failed) and whatever
       EVENT_SINK_CLICKHOUSE_PII_MODELS says, in the retirement's transaction. Otherwise a
       payload is deleted CLICKHOUSE_OUTBOX_RETENTION_DAYS after it was sent, or after it was
       queued if it will never be sent (superseded, removed, split); rows ClickHouse rejected
       for good CLICKHOUSE_OUTBOX_FAILED_RETENTION_DAYS after they failed (outbox.purge).
    .. pii_types: name, username, email_address, birth_date, gender, location, phone_number, biography
    .. pii_retirement: local_api (outbox.deletes)
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        BATCHED = "batched", "In a batch"
        SUPERSEDED = "superseded", "Superseded by a newer snapshot"
        SPLIT = "split", "Split to isolate rejected rows"
        REMOVED = "removed", "Removed by a retirement or a delete"

    # No index of its own: ch_outbox_entry_snapshot (snapshot, status) serves every lookup by snapshot,
    # and each index is one more write per entry (the deferred fill writes thousands at a time).
    snapshot = models.ForeignKey(Snapshot, on_delete=models.CASCADE, related_name="entries", null=True, blank=True,
                                 db_index=False)
    table = models.CharField(max_length=128)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.INSERT)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="entries", null=True, blank=True)
    row_count = models.PositiveIntegerField()
    payload = models.BinaryField()
    encoding = models.CharField(max_length=8, blank=True, default="", help_text='"gzip", or "" for raw lines.')
    created = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name_plural = "outbox entries"
        indexes = [
            models.Index(fields=["status", "kind", "table", "id"], name="ch_outbox_entry_pending_kind"),
            models.Index(fields=["snapshot", "status"], name="ch_outbox_entry_snapshot"),
            # The purge finds entries that will never be sent (superseded, removed, split) by age.
            models.Index(fields=["status", "created"], name="ch_outbox_entry_age"),
        ]
        ordering = ["id"]

    def __str__(self):
        return f"entry {self.pk} → {self.table} ({self.status}, {self.row_count} rows)"

    def lines(self):
        """The entry's rows as raw JSONEachRow bytes, whatever their stored encoding."""
        return decompress(self.payload, self.encoding)


class CourseDelivery(Snapshot):
    """
    The latest snapshot of each course, seen as that course's delivery to ClickHouse: the
    admin's course view (see `operations.delivery` for how its state is derived).

    .. no_pii: A view of Snapshot.
    """

    class Meta:
        proxy = True
        verbose_name = "course"
        verbose_name_plural = "courses"


class SubjectDelivery(Snapshot):
    """
    The latest snapshot of each subject of the other producers (enrollments, user profiles,
    external ids, tags) and of each retirement: the admin's "learners and tags" view.

    .. no_pii: A view of Snapshot.
    """

    class Meta:
        proxy = True
        verbose_name = "learner or tag"
        verbose_name_plural = "learners and tags"


class DumpJob(models.Model):
    """
    A full dump in the background: a snapshot of every subject of one or several producers
    (every course the source knows, every enrollment...), or of those changed since a time,
    or of a list, taken in chunks by celery workers or by a management command. Its subjects
    are listed once (`DumpJobItem`), or, for a whole-table dump of a learner table, walked by
    key range from a cursor (`DumpCursor`, `dumps.ranges`), so a job that a dead worker left
    resumes where it stopped; `active` is unique, so two jobs never run at once. A finished job's subjects
    are purged after CLICKHOUSE_OUTBOX_RETENTION_DAYS, and the job with them unless it is
    the latest of its action.

    .. pii: `requested_by` points to the staff user who started the job from the admin (set
       to NULL if that user is deleted); the job goes CLICKHOUSE_OUTBOX_RETENTION_DAYS after it
       finished, unless it is the latest of its action.
    .. pii_types: id
    .. pii_retirement: retained
    """

    class Action(models.TextChoices):
        DUMP = "dump", "Dump: take a new snapshot of each"
        VERIFY = "verify", "Verify: compare what ClickHouse holds with what was delivered"

    class Scope(models.TextChoices):
        ALL = "all", "All"
        CHANGED = "changed", "Changed since"
        SELECTED = "selected", "Selected"

    class Replicas(models.TextChoices):
        ONE = "one", "Through the configured server (one replica)"
        EACH = "each", "On each replica"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed: the subjects could not be listed"

    action = models.CharField(max_length=8, choices=Action.choices, default=Action.DUMP)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.ALL)
    repair = models.BooleanField(
        default=False, help_text="A verification that, once done, dumps again what differs (a dump job of its own)."
    )
    replicas = models.CharField(max_length=8, choices=Replicas.choices, default=Replicas.ONE)
    repair_job = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    producers = models.CharField(
        max_length=255, default="course_structure", help_text="The producers whose subjects it dumps, comma-separated."
    )
    changed_since = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # True while queued or running, NULL after: a unique column holds any number of NULLs
    # on every database, so at most one job is active (MySQL has no partial unique index).
    active = models.BooleanField(null=True, blank=True, unique=True, default=True, editable=False)
    origin = models.CharField(max_length=64, help_text="What started it: admin, outbox_requeue, ...")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    error = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(
        null=True, blank=True, help_text="When a celery task was last sent to work on it."
    )

    class Meta:
        ordering = ["-id"]
        permissions = [
            ("start_dumpjob", "Can start full dumps"),
            ("cancel_dumpjob", "Can cancel full dumps and verifications"),
            ("start_verification", "Can verify what ClickHouse holds"),
        ]

    def __str__(self):
        return f"dump job {self.pk}: {self.description} ({self.status})"

    @property
    def producer_names(self):
        return [name for name in self.producers.split(",") if name]

    @property
    def description(self):
        """What the job dumps, in words: 'all courses', 'enrollments changed since 2026-11-01 08:30:00 UTC'."""
        nouns = []
        for name in self.producer_names:
            try:
                nouns.append(registry.get(name).noun[1])
            except registry.UnknownProducer:
                nouns.append(name)
        what = ", ".join(nouns[:-1]) + f" and {nouns[-1]}" if len(nouns) > 1 else (nouns[0] if nouns else "nothing")
        if self.scope == self.Scope.CHANGED and self.changed_since:
            text = f"{what} changed since {self.changed_since.astimezone(dt_timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
        elif self.scope == self.Scope.SELECTED:
            text = f"selected {what}"
        else:
            text = f"all {what}"
        if self.action == self.Action.VERIFY:
            text = f"verify {text}" + (", then repair" if self.repair else "")
            text += " on each replica" if self.replicas == self.Replicas.EACH else ""
        return text


class Verdict(models.Model):
    """
    What the last verification found for a subject: its latest delivered snapshot compared
    with what ClickHouse holds for that dump_id (and, where the source can tell, whether
    the source holds a newer version). One row per subject, replaced by each verification.

    .. no_pii: Subjects (course keys, row ids, user ids) and row counts only.
    """

    class Kind(models.TextChoices):
        OK = "ok", "OK"
        ABSENT = "absent", "Not in ClickHouse"
        MISSING = "missing", "Missing rows"
        DUPLICATES = "duplicates", "Duplicated rows"
        STALE = "stale", "Stale"
        DIFFERS = "differs", "Content differs from the source"
        UNDELIVERED = "undelivered", "Not delivered yet"
        NEVER = "never", "Never sent by the outbox"

    producer = models.CharField(max_length=64)
    subject = models.CharField(max_length=255)
    verdict = models.CharField(max_length=16, choices=Kind.choices)
    snapshot = models.ForeignKey(Snapshot, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    details = models.JSONField(default=dict, blank=True, help_text="Per table (and replica): rows expected, found, distinct.")
    checked_at = models.DateTimeField()
    job = models.ForeignKey("DumpJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="verdicts")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["producer", "subject"], name="ch_outbox_verdict_once")]
        indexes = [models.Index(fields=["verdict", "producer"], name="ch_outbox_verdict_kind")]
        ordering = ["producer", "subject"]

    def __str__(self):
        return f"{self.producer} {self.subject}: {self.verdict}"


class DumpJobItem(models.Model):
    """
    One subject of a dump job: pending until a worker claims it in a chunk (a lease, like
    a batch's), then done with its snapshot, or failed with the reason. Purged with its
    finished job's subjects (`outbox.purge`).

    .. pii: `error` is the last line of the error reading the subject, which may quote a
       user's data: a retirement empties it for the items of the user's snapshots.
    .. pii_types: other
    .. pii_retirement: local_api (outbox.deletes)
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        CLAIMED = "claimed", "Being read"
        DONE = "done", "Queued"
        FAILED = "failed", "Failed"

    job = models.ForeignKey(DumpJob, on_delete=models.CASCADE, related_name="items")
    producer = models.CharField(max_length=64, default="course_structure")
    subject = models.CharField(max_length=255)
    position = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    lease_owner = models.UUIDField(null=True, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    snapshot = models.ForeignKey(Snapshot, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    error = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "producer", "subject"], name="ch_outbox_dump_item_once"),
        ]
        indexes = [models.Index(fields=["job", "status", "position"], name="ch_outbox_dump_item_next")]
        ordering = ["job", "position"]

    def __str__(self):
        return f"{self.producer} {self.subject} in dump job {self.job_id} ({self.status})"


class SweptRange(models.Model):
    """
    What the last sweep (`reconcile.sweep`), or the whole-table dump that queued them
    (`dumps.ranges`), read of one range of a producer's primary keys: the digest of its rows
    as our serializers write them (without dump_id and time_last_dumped), and each row's.
    A range whose digest is unchanged is not compared row by row again: nothing in it
    changed, with or without a signal; in one that changed, only the rows whose own digest
    changed are.

    .. pii: `row_digests` holds a one-way hash (8 bytes) of each row of a producer of personal
       data, by its key; no row's content. A retirement takes the user's rows' out
       (`outbox.swept_ranges.forget_user_rows`, in the retirement's transaction).
    .. pii_types: other
    .. pii_retirement: local_api (outbox.deletes)
    """

    producer = models.CharField(max_length=64)
    key_from = models.BigIntegerField(help_text="The first primary key of the range.")
    key_to = models.BigIntegerField(help_text="The last primary key of the range (inclusive).")
    digest = models.CharField(max_length=32)
    row_digests = models.BinaryField(
        blank=True, default=b"",
        help_text="Each row's key and the first half of its digest, as read (outbox.swept_ranges): only the rows "
                  "that differ from these are compared with their snapshots when the range changed.",
    )
    rows = models.PositiveIntegerField(default=0)
    queued = models.PositiveIntegerField(default=0, help_text="Rows the last sweep of the range queued (they differed).")
    swept_at = models.DateTimeField(help_text="Database time.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["producer", "key_from"], name="ch_outbox_swept_range_once")]
        ordering = ["producer", "key_from"]

    def __str__(self):
        return f"{self.producer} {self.key_from}-{self.key_to}: {self.rows} rows"


class DumpCursor(models.Model):
    """
    Where the whole-table dump (or verification) of one producer by a job stands (producers
    that walk their table by key range: `dumps.ranges`): every row with a key up to
    `last_key` is queued (or checked).
    One worker at a time advances it, under a lease like a subject's; the chunk it queues
    and the cursor's advance are one transaction, so a worker killed mid-chunk leaves the
    cursor where the last queued chunk ended and the next worker goes on from there.

    .. no_pii: Keys and counts only.
    """

    job = models.ForeignKey(DumpJob, on_delete=models.CASCADE, related_name="cursors")
    producer = models.CharField(max_length=64)
    last_key = models.BigIntegerField(default=0, help_text="Every row with a key up to this one is queued.")
    rows_done = models.BigIntegerField(default=0)
    rows_estimate = models.BigIntegerField(default=0, help_text="The table's rows when the job started.")
    chunks = models.PositiveIntegerField(default=0)
    #: A verification's: subjects found ok (no Verdict is kept of them) and to repair, of `rows_done` checked.
    rows_ok = models.BigIntegerField(default=0, help_text="A verification's subjects found ok (no verdict kept).")
    rows_to_repair = models.BigIntegerField(default=0, help_text="A verification's subjects found to repair.")
    finished = models.BooleanField(default=False)
    lease_owner = models.UUIDField(null=True, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "producer"], name="ch_outbox_dump_cursor_once")]
        ordering = ["job", "id"]
        default_permissions = ()  # shown through its job

    def __str__(self):
        return f"{self.producer} up to key {self.last_key} in dump job {self.job_id}"


class DumpChunk(models.Model):
    """
    One key range of a whole-table dump (`key_from` to `key_to`, both included), queued as
    one snapshot whose one entry holds the range's rows (they share its dump_id). A
    retirement finds the chunks holding a user's rows by the user's keys and takes those
    lines out of them (`outbox.chunk_rows`); a verification counts a subject the outbox sent
    in a chunk by the chunk's snapshot.

    .. no_pii: Keys and counts only (the rows are in the snapshot's entry).
    """

    job = models.ForeignKey(DumpJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="chunks")
    producer = models.CharField(max_length=64)
    key_from = models.BigIntegerField()
    key_to = models.BigIntegerField()
    snapshot = models.OneToOneField(Snapshot, on_delete=models.CASCADE, related_name="chunk")
    rows = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["producer", "key_from"], name="ch_outbox_dump_chunk_keys")]
        ordering = ["producer", "key_from"]
        default_permissions = ()  # shown through its snapshot and job

    def __str__(self):
        return f"{self.producer} keys {self.key_from}-{self.key_to} ({self.rows} rows)"
