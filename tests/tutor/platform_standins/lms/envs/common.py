"""Stand-in for edx-platform's lms/envs/common.py: the names Tutor's settings read, then the plugins' common settings."""

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
REGISTRATION_EXTRA_FIELDS = {}
PROFILE_IMAGE_BACKEND = {"options": {}}
IDA_LOGOUT_URI_LIST = []
CSRF_TRUSTED_ORIGINS = []
SYSTEM_WIDE_ROLE_CLASSES = ["enterprise.SystemWideEnterpriseUserRoleAssignment"]

add_plugins(__name__, "lms.djangoapp", "common")
