"""
The Django app config, and how the Open edX plugin system wires it into the CMS and the LMS.

Both run the same app on the same database (as Tutor deploys them): a change is queued in
whichever process makes it (a publish in Studio, an enrollment or a retirement in the LMS)
and one drain, the CMS worker's, sends everything.
"""

from django.apps import AppConfig

SETTINGS = {
    "common": {"relative_path": "settings.common"},
    "production": {"relative_path": "settings.production"},
    "test": {"relative_path": "settings.test"},
}

#: /clickhouse_outbox/metrics and /clickhouse_outbox/health (monitoring.views).
URLS = {"namespace": "clickhouse_outbox", "regex": r"^clickhouse_outbox/", "relative_path": "urls"}


class ClickhouseOutboxConfig(AppConfig):
    """clickhouse_outbox: Aspects' event_sink tables, queued in an outbox and drained to ClickHouse."""

    name = "clickhouse_outbox"
    verbose_name = "ClickHouse outbox"
    default_auto_field = "django.db.models.BigAutoField"

    plugin_app = {
        "url_config": {
            "cms.djangoapp": URLS,
            "lms.djangoapp": URLS,
        },
        "settings_config": {
            "cms.djangoapp": SETTINGS,
            "lms.djangoapp": SETTINGS,
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
            "lms.djangoapp": {
                "relative_path": "receivers",
                "receivers": [
                    {
                        "receiver_func_name": "user_retired",
                        "signal_path": "openedx.core.djangoapps.user_api.accounts.signals.USER_RETIRE_LMS_MISC",
                        "dispatch_uid": "clickhouse_outbox.user_retired",
                    },
                ],
            },
        },
    }

    def ready(self):
        # Importing these registers the producers, connects the openedx-events receivers,
        # registers the system checks and the celery tasks.
        from importlib import import_module  # pylint: disable=import-outside-toplevel

        from clickhouse_outbox import checks, producers, receivers, tasks  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel

        for module in producers.MODULES:
            import_module(module)
        receivers.connect_model_receivers()
        import_module("clickhouse_outbox.reconcile.jobs")  # registers verifications with the dump job runner
