"""
edx-platform's CourseEnrollment, UserProfile, ExternalIdType and ExternalId, with the fields
the producers read as the platform defines them (common/djangoapps/student/models,
openedx/core/djangoapps/external_user_ids/models).

.. no_pii: Stand-ins for tests and the demo; the platform's own models carry the annotations.
"""

import uuid

from django.conf import settings
from django.db import models
from opaque_keys.edx.django.models import CourseKeyField


class UserProfile(models.Model):
    """The platform's auth_userprofile. .. no_pii: stand-in"""

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
        db_table = "auth_userprofile"


class CourseEnrollment(models.Model):
    """The platform's student_courseenrollment (its `course` foreign key is the key column course_id). .. no_pii: stand-in"""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    course_id = CourseKeyField(max_length=255, db_index=True)
    created = models.DateTimeField(auto_now_add=True, null=True, db_index=True)
    is_active = models.BooleanField(default=True)
    mode = models.CharField(default="audit", max_length=100)

    class Meta:
        db_table = "student_courseenrollment"
        unique_together = (("user", "course_id"),)


class ExternalIdType(models.Model):
    """.. no_pii: stand-in"""

    name = models.CharField(max_length=32, unique=True)
    description = models.TextField(blank=True)

    class Meta:
        db_table = "external_user_ids_externalidtype"


class ExternalId(models.Model):
    """.. no_pii: stand-in"""

    external_user_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    external_id_type = models.ForeignKey(ExternalIdType, on_delete=models.CASCADE)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)

    class Meta:
        db_table = "external_user_ids_externalid"
        unique_together = (("user", "external_id_type"),)
