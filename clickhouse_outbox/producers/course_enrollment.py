"""
The course_enrollment producer: an enrollment (CourseEnrollment, with its user) as its row,
queued when openedx-events announces an enrollment created or changed (the platform sends
those events inside the enrollment's own transaction).
"""

from clickhouse_outbox.clickhouse.tables import COURSE_ENROLLMENT
from clickhouse_outbox.outbox import registry
from clickhouse_outbox.producers.model_rows import ModelRowProducer
from clickhouse_outbox.serializers.users import (
    ENROLLMENT_VALUES,
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
    values_fields = ENROLLMENT_VALUES
    values_raw = ("course_id",)
    values_datetimes = ("created",)

    def user_of(self, enrollment):
        return enrollment.user_id

    def serialize(self, enrollment, *, dump_id, time_last_dumped):
        return enrollment_row(enrollment, dump_id=dump_id, time_last_dumped=time_last_dumped)

    def values_encoder(self, *, dump_id, time_last_dumped):
        to_key = self.model()._meta.get_field("course_id").to_python
        return enrollment_values_encoder(dump_id=dump_id, time_last_dumped=time_last_dumped, course_key=to_key)

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


ENROLLMENTS = registry.register(CourseEnrollment())
