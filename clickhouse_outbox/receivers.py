"""
Signal receivers: a course published, imported or re-run queues a snapshot of it (or, with
CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain", requests one).

`course_published` is connected by the plugin system to the modulestore's
COURSE_PUBLISHED (see apps.py); the openedx-events signals are connected here.
"""

import logging

from django.dispatch import receiver
from openedx_events.content_authoring.signals import COURSE_IMPORT_COMPLETED, COURSE_RERUN_COMPLETED

from clickhouse_outbox import conf
from clickhouse_outbox.producers.course_structure import snapshot_or_request

log = logging.getLogger(__name__)


def course_published(sender, course_key, **kwargs):  # pylint: disable=unused-argument
    """The modulestore's COURSE_PUBLISHED: queue the published course."""
    if conf.enabled():
        snapshot_or_request(course_key, "published")


@receiver(COURSE_IMPORT_COMPLETED, dispatch_uid="clickhouse_outbox.course_import_completed")
def course_import_completed(signal, sender, course, **kwargs):  # pylint: disable=unused-argument
    if conf.enabled():
        snapshot_or_request(course.course_key, "imported")


@receiver(COURSE_RERUN_COMPLETED, dispatch_uid="clickhouse_outbox.course_rerun_completed")
def course_rerun_completed(signal, sender, course, **kwargs):  # pylint: disable=unused-argument
    if conf.enabled():
        snapshot_or_request(course.course_key, "rerun")
