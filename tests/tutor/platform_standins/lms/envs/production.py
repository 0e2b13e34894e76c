"""Stand-in for edx-platform's lms/envs/production.py: the YAML's tokens, then the plugins' production settings."""

from edx_django_utils.plugins import add_plugins

from .common import *  # noqa: F403

ENV_TOKENS = {"CONTACT_EMAIL": "contact@local.openedx.io", "LMS_BASE": "local.openedx.io"}

add_plugins(__name__, "lms.djangoapp", "production")
