"""
Stand-in CourseOverview. The peer needs a real Django model: its CourseOverviewSerializer
is a DRF ModelSerializer (field types come from the model), its course task calls
`CourseOverview.objects.get(id=course_key)` and its dump command pages through
`CourseOverview.objects.all().order_by("pk")`. run_peer.py keeps the table in SQLite
:memory:.

Field types follow the platform's model (id is a CourseKeyField primary key, dates are
DateTimeFields, lowest_passing_grade a DecimalField...); `created`/`modified` are set by
`from_published_course` instead of TimeStampedModel's auto fields.
"""
# Nullable text fields as in the platform's model (the peer reads None from them).
# ruff: noqa: DJ001, DJ008

from django.db import models
from opaque_keys.edx.django.models import CourseKeyField


class CourseOverview(models.Model):
    id = CourseKeyField(db_index=True, primary_key=True, max_length=255)
    org = models.TextField(max_length=255, default="outdated_entry")
    display_name = models.TextField(null=True)
    start = models.DateTimeField(null=True)
    end = models.DateTimeField(null=True)
    enrollment_start = models.DateTimeField(null=True)
    enrollment_end = models.DateTimeField(null=True)
    self_paced = models.BooleanField(default=False)
    advertised_start = models.TextField(null=True)
    announcement = models.DateTimeField(null=True)
    lowest_passing_grade = models.DecimalField(max_digits=5, decimal_places=2, null=True)
    invitation_only = models.BooleanField(default=False)
    max_student_enrollments_allowed = models.IntegerField(null=True)
    effort = models.TextField(null=True)
    enable_proctored_exams = models.BooleanField(default=False)
    entrance_exam_enabled = models.BooleanField(default=False)
    external_id = models.CharField(max_length=128, null=True, blank=True)
    language = models.TextField(null=True)
    created = models.DateTimeField(null=True)
    modified = models.DateTimeField(null=True)

    class Meta:
        app_label = "course_overviews"

    @classmethod
    def from_published_course(cls, course, modified):
        """An unsaved overview of `course` (a PublishedCourse), as the platform would write it."""
        return cls(
            id=course.course_key,
            org=course.course_key.org,
            display_name=course.display_name,
            start=course.start,
            end=course.end,
            enrollment_start=course.enrollment_start,
            enrollment_end=course.enrollment_end,
            self_paced=course.self_paced,
            advertised_start=course.advertised_start,
            announcement=course.announcement,
            lowest_passing_grade=course.lowest_passing_grade,
            invitation_only=course.invitation_only,
            max_student_enrollments_allowed=course.max_student_enrollments_allowed,
            effort=course.effort,
            enable_proctored_exams=course.enable_proctored_exams,
            entrance_exam_enabled=course.entrance_exam_enabled,
            external_id=course.external_id,
            language=course.language,
            created=course.created,
            modified=course.modified or modified,
        )
