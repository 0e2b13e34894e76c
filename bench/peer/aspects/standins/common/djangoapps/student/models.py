"""
edx-platform's CourseEnrollment (student_courseenrollment) and UserProfile (auth_userprofile),
field for field as the standalone project's stand-ins (outbox_project/platform/models.py):
the fields the peer's CourseEnrollmentSerializer and UserProfileSerializer read (the
profile's `name` is also what the platform's COURSE_ENROLLMENT_* events carry). Tables made
by run_aspects.py (schema_editor).
"""
# Nullable text fields as in the platform's model (the peer reads None from them).
# ruff: noqa: DJ001

from django.conf import settings
from django.db import models
from opaque_keys.edx.django.models import CourseKeyField


class UserProfile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, related_name="profile", on_delete=models.CASCADE)
    name = models.CharField(blank=True, max_length=255)
    meta = models.TextField(blank=True)
    courseware = models.CharField(blank=True, max_length=255, default="course.xml")
    language = models.CharField(blank=True, max_length=255)
    location = models.CharField(blank=True, max_length=255)
    year_of_birth = models.IntegerField(blank=True, null=True)
    gender = models.CharField(blank=True, null=True, max_length=6)
    level_of_education = models.CharField(blank=True, null=True, max_length=6)
    mailing_address = models.TextField(blank=True, null=True)
    city = models.TextField(blank=True, null=True)
    country = models.CharField(blank=True, null=True, max_length=2)  # django-countries' CountryField in the platform
    state = models.CharField(blank=True, null=True, max_length=2)
    goals = models.TextField(blank=True, null=True)
    bio = models.CharField(blank=True, null=True, max_length=3000)
    profile_image_uploaded_at = models.DateTimeField(null=True, blank=True)
    phone_number = models.CharField(blank=True, null=True, max_length=50)

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
