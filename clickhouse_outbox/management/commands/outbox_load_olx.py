"""
manage.py outbox_load_olx PATH...: add OLX course exports to the standalone project's course
folder and publish each through COURSE_IMPORT_COMPLETED, as Studio does after an import.
"""

from django.core.management.base import CommandError
from openedx_events.content_authoring.data import CourseData
from openedx_events.content_authoring.signals import COURSE_IMPORT_COMPLETED

from clickhouse_outbox.management.output import OutboxCommand
from clickhouse_outbox.models import Snapshot
from clickhouse_outbox.sources import get_course_source
from clickhouse_outbox.sources.base import CourseSourceError


class Command(OutboxCommand):
    help = (
        "Add OLX course exports (folders or .tar.gz files, as Studio exports them) to the folder read by "
        "the OLX course source, then send COURSE_IMPORT_COMPLETED for each so its snapshot is queued. "
        "A broken export is reported with the file at fault and nothing is queued for it."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH", help="An OLX export folder or .tar.gz file.")

    def handle(self, *args, **options):
        source = get_course_source()
        if not hasattr(source, "add_export"):
            raise CommandError(
                f"The course source {type(source).__name__} does not take OLX exports; set "
                "CLICKHOUSE_OUTBOX_COURSE_SOURCE to clickhouse_outbox.sources.olx.OlxFolderSource."
            )
        failed = []
        for path in options["paths"]:
            try:
                course_key = source.add_export(path)
            except (CourseSourceError, OSError) as exc:
                self.stderr.write(f"{path}: not loaded: {exc}")
                failed.append(path)
                continue
            COURSE_IMPORT_COMPLETED.send_event(course=CourseData(course_key=course_key))
            snapshot = Snapshot.objects.filter(subject=str(course_key)).order_by("-id").first()
            if snapshot is None or snapshot.status == Snapshot.Status.FAILED:
                reason = snapshot.error.strip().splitlines()[-1] if snapshot else "no snapshot was recorded"
                self.stderr.write(f"{path}: loaded as {course_key}, but its snapshot failed: {reason}")
                failed.append(path)
                continue
            self.stdout.write(
                f"{path}: published {course_key}: {snapshot.row_count} rows queued (dump_id {snapshot.dump_id})"
            )
        if failed:
            raise CommandError(f"{len(failed)} of {len(options['paths'])} exports were not published.")
