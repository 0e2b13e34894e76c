"""
The outbox: snapshots taken at publish, the encoded rows they queue, and the batches that
carry those rows to ClickHouse.

A publish writes one `Snapshot` and a handful of `OutboxEntry` rows (one per destination
table, split when large) in the publish's own transaction. Each entry holds its rows
already encoded as JSONEachRow lines, so a drain only joins bytes. A drainer claims
pending entries into a `Batch`: the unit that is sent as one INSERT, retried with the
same membership, order and deduplication token, and finalised as sent or failed.
"""

import uuid
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import models
from django.utils import timezone

from clickhouse_outbox import conf
from clickhouse_outbox.outbox.payloads import decompress


class Snapshot(models.Model):
    """
    One reading of a subject (a course) taken for the outbox.

    `dump_id` and `time_last_dumped` are fixed here, so every resend of the snapshot's
    rows is byte-identical. A snapshot that could not be taken is kept with status
    `failed` and the error, so the publish is not lost: a requeue takes it again. With
    CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain" a publish writes only a `requested` snapshot; a
    drainer takes it later (under a lease) and fills in its rows.

    .. no_pii: Course keys and technical metadata only.
    """

    class Status(models.TextChoices):
        REQUESTED = "requested", "Requested: taken at the next drain"
        QUEUED = "queued", "Queued"
        FAILED = "failed", "Could not be taken"
        SUPERSEDED = "superseded", "Superseded by a newer snapshot"
        DISMISSED = "dismissed", "Dismissed: the course source does not know the course"

    producer = models.CharField(max_length=64, help_text="What produced the rows, e.g. course_structure.")
    subject = models.CharField(max_length=255, help_text="What the rows describe, e.g. a course key.")
    reason = models.CharField(max_length=64, blank=True, help_text="Why it was taken: published, imported, ...")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    dump_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    time_last_dumped = models.CharField(max_length=40, blank=True)
    row_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now, editable=False)
    # A requested snapshot (CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain") being taken by a drainer.
    lease_owner = models.UUIDField(null=True, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["producer", "subject", "-id"], name="ch_outbox_snapshot_subject"),
            models.Index(fields=["status", "id"], name="ch_outbox_snapshot_status"),
        ]
        ordering = ["-id"]
        permissions = [
            ("requeue_course", "Can requeue courses (take a new snapshot)"),
            ("dismiss_snapshot", "Can dismiss failed snapshots of unknown courses"),
        ]

    def __str__(self):
        return f"{self.producer} {self.subject} ({self.status}, {self.dump_id})"


class Batch(models.Model):
    """
    Entries claimed together and sent to one table as one INSERT.

    Its membership and order never change once claimed, so a retry sends the same bytes
    with the same `token` (ClickHouse's insert_deduplication_token). A claim is a lease
    that expires at `lease_expires_at` (database time): a dead drainer's batch comes back.

    .. no_pii: Delivery bookkeeping only.
    """

    class Status(models.TextChoices):
        CLAIMED = "claimed", "Claimed by a drainer"
        RETRY = "retry", "Waiting to be retried"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SPLIT = "split", "Split to isolate rejected rows"

    table = models.CharField(max_length=128)
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
    Rows for one destination table, encoded as JSONEachRow lines, waiting to be sent.

    `payload` is binary: the lines as one gzip member (`encoding` "gzip", see
    `outbox.payloads`), or raw for entries written before payloads were compressed. The
    bytes go to ClickHouse exactly as stored.

    .. no_pii: Course structure rows; future producers that carry PII must say so.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        BATCHED = "batched", "In a batch"
        SUPERSEDED = "superseded", "Superseded by a newer snapshot"
        SPLIT = "split", "Split to isolate rejected rows"

    snapshot = models.ForeignKey(Snapshot, on_delete=models.CASCADE, related_name="entries", null=True, blank=True)
    table = models.CharField(max_length=128)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="entries", null=True, blank=True)
    row_count = models.PositiveIntegerField()
    payload = models.BinaryField()
    encoding = models.CharField(max_length=8, blank=True, default="", help_text='"gzip", or "" for raw lines.')
    created = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name_plural = "outbox entries"
        indexes = [
            models.Index(fields=["status", "table", "id"], name="ch_outbox_entry_pending"),
            models.Index(fields=["snapshot", "status"], name="ch_outbox_entry_snapshot"),
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
    admin's course view (see `outbox.delivery` for how its state is derived).

    .. no_pii: A view of Snapshot.
    """

    class Meta:
        proxy = True
        verbose_name = "course"
        verbose_name_plural = "courses"


class DumpJob(models.Model):
    """
    A full dump in the background: a snapshot of every course the source knows (or of
    those changed since a time, or of a list), taken in chunks by celery workers or by a
    management command. Its courses are listed once (`DumpJobCourse`), so a job that a
    dead worker left resumes where it stopped; `active` is unique, so two jobs never run
    at once.

    .. pii: `requested_by` points to the staff user who started the job from the admin.
    .. pii_types: id
    .. pii_retirement: retained
    """

    class Scope(models.TextChoices):
        ALL = "all", "All courses"
        CHANGED = "changed", "Courses changed since"
        SELECTED = "selected", "Selected courses"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed: the courses could not be listed"

    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.ALL)
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
            ("cancel_dumpjob", "Can cancel full dumps"),
        ]

    def __str__(self):
        return f"dump job {self.pk}: {self.description} ({self.status})"

    @property
    def description(self):
        """What the job dumps, in words."""
        if self.scope == self.Scope.CHANGED and self.changed_since:
            return f"courses changed since {self.changed_since.astimezone(dt_timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
        return self.get_scope_display().lower()


class DumpJobCourse(models.Model):
    """
    One course of a dump job: pending until a worker claims it in a chunk (a lease, like a
    batch's), then done with its snapshot, or failed with the reason.

    .. no_pii: Course keys and bookkeeping only.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        CLAIMED = "claimed", "Being read"
        DONE = "done", "Queued"
        FAILED = "failed", "Failed"

    job = models.ForeignKey(DumpJob, on_delete=models.CASCADE, related_name="courses")
    course_key = models.CharField(max_length=255)
    position = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    lease_owner = models.UUIDField(null=True, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    snapshot = models.ForeignKey(Snapshot, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    error = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "course_key"], name="ch_outbox_dump_course_once")]
        indexes = [models.Index(fields=["job", "status", "position"], name="ch_outbox_dump_course_next")]
        ordering = ["job", "position"]

    def __str__(self):
        return f"{self.course_key} in dump job {self.job_id} ({self.status})"
