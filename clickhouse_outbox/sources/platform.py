"""
The platform's own models (enrollments, user profiles, external ids, tags), found by the
names platform-plugin-aspects gives them in EVENT_SINK_CLICKHOUSE_MODEL_CONFIG.

edx-platform is not installable outside the platform: each model is imported only when a
producer first needs it, from the setting (which the tests and the standalone project
point at models of the same shape) or from its place in edx-platform. A model that cannot
be imported is not installed: its producer queues nothing and says so once.

The content tagging models moved between releases: `openedx_tagging.core.tagging.models`
in Ulmo (openedx-learning 0.30), `openedx_tagging.models` from Verawood (openedx-core),
with their app label, `oel_tagging`, and their tables unchanged. They are found by that
label, on either layout, and so is a path into `openedx_tagging` that this release does not
have: platform-plugin-aspects' own setting names Ulmo's on every release.
"""

import functools
import logging
from importlib import import_module

from django.apps import apps
from django.conf import settings

log = logging.getLogger(__name__)

SETTING = "EVENT_SINK_CLICKHOUSE_MODEL_CONFIG"

#: The tagging models' app label, the same on every layout of the package.
TAGGING_APP_LABEL = "oel_tagging"
TAGGING_PACKAGE = "openedx_tagging"

#: Where each model lives in edx-platform (platform-plugin-aspects' defaults), and the tagging
#: models by their app label (openedx-learning or openedx-core, whichever the release installs).
DEFAULT_MODELS = {
    "auth_user": {"module": "django.contrib.auth.models", "model": "User"},
    "user_profile": {"module": "common.djangoapps.student.models", "model": "UserProfile"},
    "course_enrollment": {"module": "common.djangoapps.student.models", "model": "CourseEnrollment"},
    "external_id": {"module": "openedx.core.djangoapps.external_user_ids.models", "model": "ExternalId"},
    "tag": {"app_label": TAGGING_APP_LABEL, "model": "Tag"},
    "taxonomy": {"app_label": TAGGING_APP_LABEL, "model": "Taxonomy"},
    "object_tag": {"app_label": TAGGING_APP_LABEL, "model": "ObjectTag"},
}


def model_config(name):
    """{"module": ..., "model": ...} (or {"app_label": ..., "model": ...}) for `name`: the setting's entry, else the default."""
    configured = getattr(settings, SETTING, None) or {}
    return configured.get(name) or DEFAULT_MODELS[name]


def describe(name):
    """Where the model `name` is looked for, for messages: "module.Model" or "app_label.Model"."""
    config = model_config(name)
    if "module" in config:
        return f"{config.get('module')}.{config.get('model')}"
    return f"{config.get('app_label')}.{config.get('model')} (its app label)"


def get_model(name):
    """The model class for `name`, or None where it is not installed."""
    config = model_config(name)
    model = config.get("model", "")
    if "module" not in config:
        return _registered(config.get("app_label", ""), model)
    module = config.get("module", "")
    found = _import(module, model)
    if found is None and _in_tagging_package(module):
        found = _moved_tagging_model(module, model)
    return found


def _in_tagging_package(module):
    return module == TAGGING_PACKAGE or module.startswith(f"{TAGGING_PACKAGE}.")


@functools.cache
def _import(module, model):
    try:
        return getattr(import_module(module), model)
    except (ImportError, AttributeError) as exc:
        if not _in_tagging_package(module):  # a moved tagging model is looked up again, by its app label
            log.info("clickhouse_outbox: %s.%s is not installed here (%s); its producer queues nothing", module,
                     model, exc)
        return None
    except RuntimeError as exc:  # "Model class ... doesn't declare an explicit app_label": its app is not installed
        log.info("clickhouse_outbox: %s.%s is not an installed app's model (%s)", module, model, exc)
        return None


@functools.cache
def _registered(app_label, model):
    """The installed model `app_label.model` from Django's app registry, or None (logged once)."""
    try:
        return apps.get_model(app_label, model)
    except LookupError as exc:  # no installed app with that label, or no such model in it
        log.info("clickhouse_outbox: %s.%s is not installed here (%s); its producer queues nothing", app_label, model,
                 exc)
        return None


@functools.cache
def _moved_tagging_model(module, model):
    """A tagging model named by a path this release of openedx_tagging does not have, found by its app label."""
    found = _registered(TAGGING_APP_LABEL, model)
    if found is not None:
        log.info("clickhouse_outbox: %s has no module %s in this release (the tagging models moved in Verawood); "
                 "reading %s.%s, found by its app label", TAGGING_PACKAGE, module, found.__module__, model)
    return found


def forget_models():
    """Look the models up again (tests that change EVENT_SINK_CLICKHOUSE_MODEL_CONFIG)."""
    _import.cache_clear()
    _registered.cache_clear()
    _moved_tagging_model.cache_clear()
