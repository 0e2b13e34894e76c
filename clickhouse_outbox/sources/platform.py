"""
The platform's own models (enrollments, user profiles, external ids, tags), found by the
names platform-plugin-aspects gives them in EVENT_SINK_CLICKHOUSE_MODEL_CONFIG.

edx-platform is not installable outside the platform: each model is imported only when a
producer first needs it, from the setting (which the tests and the standalone project
point at models of the same shape) or from its place in edx-platform. A model that cannot
be imported is not installed: its producer queues nothing and says so once.
"""

import functools
import logging
from importlib import import_module

from django.conf import settings

log = logging.getLogger(__name__)

SETTING = "EVENT_SINK_CLICKHOUSE_MODEL_CONFIG"

#: Where each model lives in edx-platform and openedx-learning (platform-plugin-aspects' defaults).
DEFAULT_MODELS = {
    "auth_user": {"module": "django.contrib.auth.models", "model": "User"},
    "user_profile": {"module": "common.djangoapps.student.models", "model": "UserProfile"},
    "course_enrollment": {"module": "common.djangoapps.student.models", "model": "CourseEnrollment"},
    "external_id": {"module": "openedx.core.djangoapps.external_user_ids.models", "model": "ExternalId"},
    "tag": {"module": "openedx_tagging.models.base", "model": "Tag"},
    "taxonomy": {"module": "openedx_tagging.models.base", "model": "Taxonomy"},
    "object_tag": {"module": "openedx_tagging.models.base", "model": "ObjectTag"},
}


def model_config(name):
    """{"module": ..., "model": ...} for `name`: the setting's entry, else the platform's place."""
    configured = getattr(settings, SETTING, None) or {}
    return configured.get(name) or DEFAULT_MODELS[name]


def get_model(name):
    """The model class for `name`, or None where it is not installed."""
    config = model_config(name)
    return _import(config.get("module", ""), config.get("model", ""))


@functools.cache
def _import(module, model):
    try:
        return getattr(import_module(module), model)
    except (ImportError, AttributeError) as exc:
        log.info("clickhouse_outbox: %s.%s is not installed here (%s); its producer queues nothing", module, model,
                 exc)
        return None
    except RuntimeError as exc:  # "Model class ... doesn't declare an explicit app_label": its app is not installed
        log.info("clickhouse_outbox: %s.%s is not an installed app's model (%s)", module, model, exc)
        return None


def forget_models():
    """Look the models up again (tests that change EVENT_SINK_CLICKHOUSE_MODEL_CONFIG)."""
    _import.cache_clear()
