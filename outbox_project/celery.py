"""The project's Celery app; the broker comes from CELERY_BROKER_URL (default Redis on loopback)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outbox_project.settings")

app = Celery("outbox_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
