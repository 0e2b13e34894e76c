"""
The platform's models found where the installed release keeps them. The tagging models moved
from `openedx_tagging.core.tagging.models` (Ulmo, openedx-learning 0.30) to
`openedx_tagging.models` (Verawood, openedx-core) and kept their app label: they are found
with no setting on either layout, and through platform-plugin-aspects' setting, which names
Ulmo's module on every release. `tox -e ulmo` and `tox -e verawood` run these on each layout.
"""

from importlib.util import find_spec

import pytest
from django.apps import apps

from clickhouse_outbox.receivers import connect_model_receivers
from clickhouse_outbox.sources import platform

TAGGING_MODELS = {"taxonomy": "Taxonomy", "tag": "Tag", "object_tag": "ObjectTag"}

#: The tagging models' module on each layout; platform-plugin-aspects' setting names Ulmo's.
LAYOUTS = {"ulmo": "openedx_tagging.core.tagging.models", "verawood": "openedx_tagging.models"}


def installed_layout():
    return "verawood" if find_spec("openedx_tagging.apps") else "ulmo"


@pytest.fixture(autouse=True)
def fresh_lookup():
    platform.forget_models()
    yield
    platform.forget_models()


def point_tagging_models_at(settings, module):
    settings.EVENT_SINK_CLICKHOUSE_MODEL_CONFIG = {
        **settings.EVENT_SINK_CLICKHOUSE_MODEL_CONFIG,
        **{name: {"module": module, "model": model} for name, model in TAGGING_MODELS.items()},
    }


def test_the_tagging_models_are_found_on_the_installed_layout_with_no_setting(settings):
    assert not set(TAGGING_MODELS) & set(settings.EVENT_SINK_CLICKHOUSE_MODEL_CONFIG)  # the project sets none
    for name, model in TAGGING_MODELS.items():
        found = platform.get_model(name)
        assert found is apps.get_model("oel_tagging", model)
        assert found.__module__.startswith(LAYOUTS[installed_layout()])
        assert platform.describe(name) == f"oel_tagging.{model} (its app label)"


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_a_setting_naming_either_layouts_module_finds_the_installed_models(settings, caplog, layout):
    caplog.set_level("INFO", logger="clickhouse_outbox.sources.platform")
    point_tagging_models_at(settings, LAYOUTS[layout])
    for name, model in TAGGING_MODELS.items():
        assert platform.get_model(name) is platform.get_model(name) is apps.get_model("oel_tagging", model)
    moved = [record.getMessage() for record in caplog.records if "found by its app label" in record.getMessage()]
    if layout == installed_layout():
        assert moved == []  # the setting's own module, imported
    else:
        assert len(moved) == len(TAGGING_MODELS)  # once per model, not per lookup
        assert f"openedx_tagging has no module {LAYOUTS[layout]} in this release" in moved[0]


def test_a_module_outside_openedx_tagging_is_not_replaced_by_a_guess(settings):
    """Only openedx_tagging's own modules moved: a wrong path elsewhere stays not installed (check W034 says so)."""
    point_tagging_models_at(settings, "custom_tagging.models")
    assert [platform.get_model(name) for name in TAGGING_MODELS] == [None, None, None]
    assert platform.describe("tag") == "custom_tagging.models.Tag"


def test_the_tag_receivers_connect_with_platform_plugin_aspects_setting(settings):
    """platform-plugin-aspects sets Ulmo's module for the tagging models on every release (its sinks broke in Verawood)."""
    point_tagging_models_at(settings, LAYOUTS["ulmo"])
    connected = connect_model_receivers()
    for name in TAGGING_MODELS:
        assert f"{name} tagging_saved" in connected
        assert f"{name} tagging_deleted" in connected
