from django.apps import AppConfig


class PlatformStandinsConfig(AppConfig):
    name = "outbox_project.platform"
    label = "platform_standins"
    verbose_name = "edx-platform stand-ins (standalone project)"
    default_auto_field = "django.db.models.AutoField"
