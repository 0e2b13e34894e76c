"""
The Django app config, and how the Open edX plugin system wires it into the CMS.
"""

from django.apps import AppConfig


class ClickhouseOutboxConfig(AppConfig):
    """clickhouse_outbox: course publishes queued in an outbox and drained to ClickHouse."""

    name = "clickhouse_outbox"
    verbose_name = "ClickHouse outbox"
    default_auto_field = "django.db.models.BigAutoField"

    plugin_app = {
        "settings_config": {
            "cms.djangoapp": {
                "common": {"relative_path": "settings.common"},
                "production": {"relative_path": "settings.production"},
                "test": {"relative_path": "settings.test"},
            },
        },
        "signals_config": {
            "cms.djangoapp": {
                "relative_path": "receivers",
                "receivers": [
                    {
                        "receiver_func_name": "course_published",
                        "signal_path": "xmodule.modulestore.django.COURSE_PUBLISHED",
                        "dispatch_uid": "clickhouse_outbox.course_published",
                    },
                ],
            },
        },
    }

    def ready(self):
        # Importing these connects the openedx-events receivers, registers the system
        # checks and the celery task.
        from clickhouse_outbox import checks, receivers, tasks  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
