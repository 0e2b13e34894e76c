"""
edx-platform's ExternalIdType and ExternalId (external_user_ids_externalidtype,
external_user_ids_externalid), field for field as the standalone project's stand-ins
(outbox_project/platform/models.py): what the peer's UserExternalIDSerializer reads.
Tables made by run_aspects.py (schema_editor).
"""

import uuid

from django.conf import settings
from django.db import models


class ExternalIdType(models.Model):
    name = models.CharField(max_length=32, unique=True)
    description = models.TextField(blank=True)

    class Meta:
        app_label = "external_user_ids"
        db_table = "external_user_ids_externalidtype"

    def __str__(self):
        return self.name


class ExternalId(models.Model):
    external_user_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    external_id_type = models.ForeignKey(ExternalIdType, on_delete=models.CASCADE)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)

    class Meta:
        app_label = "external_user_ids"
        db_table = "external_user_ids_externalid"
        unique_together = (("user", "external_id_type"),)

    def __str__(self):
        return str(self.external_user_id)
