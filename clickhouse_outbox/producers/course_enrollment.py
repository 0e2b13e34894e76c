"""
The course_enrollment producer: an enrollment (CourseEnrollment, with its user) as its row,
queued when openedx-events announces an enrollment created or changed (the platform sends
those events inside the enrollment's own transaction).
"""

import functools

from django.db.models import CharField, ExpressionWrapper, F

from clickhouse_outbox.clickhouse.tables import COURSE_ENROLLMENT
from clickhouse_outbox.db import among
from clickhouse_outbox.outbox import registry
from clickhouse_outbox.producers.model_rows import ModelRowProducer
from clickhouse_outbox.serializers.users import (
    ENROLLMENT_VALUES,
    enrollment_line,
    enrollment_row,
    enrollment_values_encoder,
)


class CourseEnrollment(ModelRowProducer):
    name = "course_enrollment"
    noun = ("enrollment", "enrollments")
    model_name = "course_enrollment"
    one_row_capture = True
    table = COURSE_ENROLLMENT
    related = ("user",)
    #: course_id read as stored (`stored_course`), not parsed into a key per row.
    values = ("id", "user_id", "stored_course", "created", "is_active", "mode", "user__username")

    values_fields = ENROLLMENT_VALUES
    values_raw = ("course_id",)

    def user_of(self, enrollment):
        return enrollment.user_id

    def serialize(self, enrollment, *, dump_id, time_last_dumped):
        return enrollment_row(enrollment, dump_id=dump_id, time_last_dumped=time_last_dumped)

    def values_encoder(self, *, dump_id, time_last_dumped):
        to_key = self.model()._meta.get_field("course_id").to_python
        return enrollment_values_encoder(dump_id=dump_id, time_last_dumped=time_last_dumped, course_key=to_key)

    def rows_of(self, keys):
        """The rows, their course key as str() of the key the model reads (`course_text`)."""
        field = self.model()._meta.get_field("course_id") if self.model() is not None else None
        stored = ExpressionWrapper(F("course_id"), output_field=CharField())  # a plain column: no key converter
        rows = among(self.queryset(), keys).annotate(stored_course=stored).values_list(*self.values)
        return {str(pk): (pk, user_id, course_text(field, course), *rest) for pk, user_id, course, *rest in rows}

    def serialize_values(self, row, *, dump_id, time_last_dumped):
        return enrollment_line(*row, dump_id=dump_id, time_last_dumped=time_last_dumped)

    def subject_of(self, user_id, course_key):
        """The enrollment of `user_id` in `course_key` (as an event names it), or None."""
        model = self.model()
        if model is None:
            return None
        pk = model._default_manager.filter(user_id=user_id, course_id=course_key).values_list("pk", flat=True).first()
        return None if pk is None else str(pk)

    def find(self, user_id, course_key):
        """The enrollment of `user_id` in `course_key` with its user (one query, for `prepare_found`), or None."""
        if self.model() is None:
            return None
        return self.queryset().filter(user_id=user_id, course_id=course_key).first()


@functools.lru_cache(maxsize=10_000)
def course_text(field, stored):
    """
    str() of the course key `field` reads from the `stored` text, as an instance has it: the
    same parse, once per course rather than once per enrollment (a course has thousands).
    """
    convert = getattr(field, "from_db_value", None)  # a CourseKeyField's; a plain CharField has none
    return str(stored if convert is None else convert(stored, None, None))


ENROLLMENTS = registry.register(CourseEnrollment())
