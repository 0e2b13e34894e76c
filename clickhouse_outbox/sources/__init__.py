"""
Course sources: where the published version of a course is read from.

The platform's modulestore inside edx-platform; folders of OLX exports everywhere else.
Each returns a `PublishedCourse`, the same shape, so the serializers never know which.
"""

from django.utils.module_loading import import_string

from clickhouse_outbox import conf


def get_course_source():
    """The course source named by the CLICKHOUSE_OUTBOX_COURSE_SOURCE setting."""
    return import_string(conf.course_source_path())()
