"""
Settings for the standalone project, all from the environment.

    DATABASE_URL         sqlite:///path | mysql://user:pass@host:port/db | postgres://user@host/db
                         (default: SQLite in .demo/outbox.sqlite3)
    CLICKHOUSE_URL       http(s)://host:port or chdb:///absolute/path (default: chdb in .demo/chdb)
    CLICKHOUSE_URLS      or several replicas' http(s)://host:port, comma-separated (failover)
    CLICKHOUSE_USERNAME, CLICKHOUSE_PASSWORD, CLICKHOUSE_DATABASE (default event_sink)
    OLX_COURSES_DIR      the folder of OLX exports the course source reads (default .demo/courses)
    CELERY_BROKER_URL    (default redis://127.0.0.1:6379/0)
    CLICKHOUSE_OUTBOX_*  any of the plugin's own settings, as a JSON value (e.g. CLICKHOUSE_OUTBOX_LEASE_SECS=30)
"""

import json
import os
from importlib.util import find_spec
from pathlib import Path

import dj_database_url
import django

from clickhouse_outbox.schedule import (
    SWEEP_BEAT_ENTRY,
    VERIFY_BEAT_ENTRY,
    beat_entry,
    sweep_entry,
    verify_entry,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DEMO_DIR = Path(os.environ.get("OUTBOX_DEMO_DIR", BASE_DIR / ".demo"))


def tagging_app():
    """
    The content tagging app, as edx-platform lists it: its own package from Verawood
    (openedx-core), `openedx_tagging.core.tagging` in Ulmo (openedx-learning 0.30); the same
    app label, oel_tagging, and tables in both.
    """
    return "openedx_tagging" if find_spec("openedx_tagging.apps") else "openedx_tagging.core.tagging"


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "clickhouse-outbox-standalone-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "waffle",  # edx-platform's feature flags: the peer's per-sink switches are waffle flags
    tagging_app(),  # content tagging (openedx-core, or Ulmo's openedx-learning), as in edx-platform
    "outbox_project.platform",  # stand-ins for edx-platform's enrollment, profile and external id models
    "clickhouse_outbox.apps.ClickhouseOutboxConfig",
    "outbox_project",  # only for its migration that creates the cache table
]

# Where the producers find the platform's models (platform-plugin-aspects' setting): the stand-ins.
EVENT_SINK_CLICKHOUSE_MODEL_CONFIG = {
    "user_profile": {"module": "outbox_project.platform.models", "model": "UserProfile"},
    "course_enrollment": {"module": "outbox_project.platform.models", "model": "CourseEnrollment"},
    "external_id": {"module": "outbox_project.platform.models", "model": "ExternalId"},
}

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "outbox_project.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{DEMO_DIR / 'outbox.sqlite3'}"),
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("charset", "utf8mb4")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several drainers may share one SQLite file (the demo, tests): wait for the write lock.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("timeout", 30)
    if django.VERSION >= (5, 1):
        # Begin every transaction with the write lock: a transaction that has read and then
        # writes while another connection commits gets "database is locked" at once, busy
        # timeout or not. (Django 4.2 cannot ask for it; the demo and tests then rely on retries.)
        DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
    # A test database in a file, not in memory, so drainer, worker and beat processes share it.
    DATABASES["default"]["TEST"] = {"NAME": str(DATABASES["default"]["NAME"]) + ".test"}
if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    # What edx-platform uses; it also keeps claim locks from spreading to gaps.
    DATABASES["default"]["OPTIONS"].setdefault("isolation_level", "read committed")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "/static/"

EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = {
    "url": os.environ.get("CLICKHOUSE_URL", f"chdb://{(DEMO_DIR / 'chdb').resolve()}"),
    "username": os.environ.get("CLICKHOUSE_USERNAME", ""),
    "password": os.environ.get("CLICKHOUSE_PASSWORD", ""),
    "database": os.environ.get("CLICKHOUSE_DATABASE", "event_sink"),
    "timeout_secs": float(os.environ.get("CLICKHOUSE_TIMEOUT_SECS", "10")),
}
if os.environ.get("CLICKHOUSE_URLS"):
    # Replicas of one shard, comma-separated: the plugin fails over between them.
    EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG["urls"] = os.environ["CLICKHOUSE_URLS"]
    if not os.environ.get("CLICKHOUSE_URL"):
        del EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG["url"]

CLICKHOUSE_OUTBOX_COURSE_SOURCE = "clickhouse_outbox.sources.olx.OlxFolderSource"
# Every producer on (in edx-platform they follow the peer's EVENT_SINK_CLICKHOUSE_<MODEL>_ENABLED by default).
for _producer in ("course_enrollment", "user_profile", "external_id", "taxonomy", "tag", "object_tag"):
    globals()[f"CLICKHOUSE_OUTBOX_{_producer.upper()}_ENABLED"] = True
CLICKHOUSE_OUTBOX_OLX_DIR = os.environ.get("OLX_COURSES_DIR", str(DEMO_DIR / "courses"))
for _name, _value in os.environ.items():
    if _name.startswith("CLICKHOUSE_OUTBOX_"):
        try:
            globals()[_name] = json.loads(_value)
        except ValueError:
            globals()[_name] = _value

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
if CELERY_BROKER_URL == "filesystem://":
    # The demo's broker: a folder, so `make demo-admin` needs no Redis.
    _BROKER_DIR = DEMO_DIR / "broker"
    _BROKER_DIR.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR), "data_folder_out": str(_BROKER_DIR),
        "control_folder": str(_BROKER_DIR / "control"),
    }
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS = float(
    os.environ.get("OUTBOX_DRAIN_INTERVAL_SECS", globals().get("CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS", 10))
)
# The same entry the plugin's settings install into edx-platform's CELERYBEAT_SCHEDULE.
CELERY_BEAT_SCHEDULE = {"clickhouse_outbox.drain": beat_entry(CLICKHOUSE_OUTBOX_DRAIN_INTERVAL_SECS)}
CLICKHOUSE_OUTBOX_VERIFY_INTERVAL_SECS = float(
    os.environ.get("OUTBOX_VERIFY_INTERVAL_SECS", globals().get("CLICKHOUSE_OUTBOX_VERIFY_INTERVAL_SECS", 0))
)
if CLICKHOUSE_OUTBOX_VERIFY_INTERVAL_SECS > 0:  # the periodic verification, when asked (off by default)
    CELERY_BEAT_SCHEDULE[VERIFY_BEAT_ENTRY] = verify_entry(CLICKHOUSE_OUTBOX_VERIFY_INTERVAL_SECS)
CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS = float(
    os.environ.get("OUTBOX_SWEEP_INTERVAL_SECS", globals().get("CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS", 0))
)
if CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS > 0:  # the periodic sweep of the learner and tag tables (off by default)
    CELERY_BEAT_SCHEDULE[SWEEP_BEAT_ENTRY] = sweep_entry(CLICKHOUSE_OUTBOX_SWEEP_INTERVAL_SECS)

CACHES = {
    "default": {
        "BACKEND": os.environ.get("DJANGO_CACHE_BACKEND", "django.core.cache.backends.db.DatabaseCache"),
        "LOCATION": os.environ.get("DJANGO_CACHE_LOCATION", "clickhouse_outbox_cache"),
    }
}

# edx-django-utils' telemetry backends for the drain's custom attributes: none in the standalone
# project (its default, New Relic's, is not installed here; edx-platform sets its own).
OPENEDX_TELEMETRY = []

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # printable: a display name or ClickHouse's error text in a log line cannot drive the terminal.
    "formatters": {"plain": {"class": "clickhouse_outbox.text.PrintableFormatter",
                             "format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "clickhouse_outbox": {
            "handlers": ["console"], "level": os.environ.get("OUTBOX_LOG_LEVEL", "INFO"), "propagate": False,
        },
    },
}
