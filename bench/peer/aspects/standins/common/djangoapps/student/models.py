"""
edx-platform's CourseEnrollment (student_courseenrollment) with the fields of the standalone
project's stand-in (outbox_project/platform/models.py), which are the ones the peer's
CourseEnrollmentSerializer reads; and UserProfile (auth_userprofile) with only `name`, which
the platform's COURSE_ENROLLMENT_* events carry. Tables made by run_aspects.py (schema_editor).
"""

from django.conf import settings
from django.db import models
from opaque_keys.edx.django.models import CourseKeyField


class UserProfile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, related_name="profile", on_delete=models.CASCADE)
    name = models.CharField(blank=True, max_length=255)

    class Meta:
        app_label = "student"
        db_table = "auth_userprofile"

    def __str__(self):
        return self.name


class CourseEnrollment(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    course_id = CourseKeyField(max_length=255, db_index=True)
    created = models.DateTimeField(auto_now_add=True, null=True, db_index=True)
    is_active = models.BooleanField(default=True)
    mode = models.CharField(default="audit", max_length=100)

    class Meta:
        app_label = "student"
        db_table = "student_courseenrollment"
        unique_together = (("user", "course_id"),)

    def __str__(self):
        return f"{self.user_id} in {self.course_id}"
