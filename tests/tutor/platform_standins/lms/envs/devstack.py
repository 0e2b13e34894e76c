"""Stand-in for edx-platform's lms/envs/devstack.py (Tutor's development settings import it)."""

from edx_django_utils.plugins import add_plugins

from .common import *  # noqa: F403

ENV_TOKENS = {"CONTACT_EMAIL": "contact@local.openedx.io", "LMS_BASE": "local.openedx.io"}

add_plugins(__name__, "lms.djangoapp", "devstack")
