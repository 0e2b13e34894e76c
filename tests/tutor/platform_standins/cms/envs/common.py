"""Stand-in for edx-platform's cms/envs/common.py: the names Tutor's settings read, then the plugins' common settings."""

from edx_django_utils.plugins import add_plugins

FEATURES = {}
INSTALLED_APPS = ["lms.djangoapps.coursewarehistoryextended"]
DATABASE_ROUTERS = ["openedx.core.lib.django_courseware_routers.StudentModuleHistoryExtendedRouter"]
MODULESTORE = {"default": {"OPTIONS": {"stores": [{"OPTIONS": {}}]}}}
VIDEO_IMAGE_SETTINGS = {"STORAGE_KWARGS": {}}
VIDEO_TRANSCRIPTS_SETTINGS = {"STORAGE_KWARGS": {}}
LOG_DIR = "/openedx/data/logs"
LOGGING = {"handlers": {}, "loggers": {"tracking": {}}}
JWT_AUTH = {}
LMS_ROOT_URL = "http://local.openedx.io"
STATIC_ROOT = "/openedx/staticfiles"
LOGIN_REDIRECT_WHITELIST = []
CSRF_TRUSTED_ORIGINS = []

add_plugins(__name__, "cms.djangoapp", "common")
