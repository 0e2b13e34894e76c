"""
The setting annotations in clickhouse_outbox/settings/common.py (read by code_annotations and
the docs) name every setting of the table with its default, and are exactly what
scripts/settings-docs writes from it.
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

from clickhouse_outbox.settings import common, docs
from clickhouse_outbox.settings.table import BACKEND_SETTING, DEFAULT_BACKEND_CONFIG, SETTINGS

ROOT = Path(__file__).resolve().parents[2]
ANNOTATION = re.compile(r"^\s*# \.\. (setting_\w+): (.*(?:\n\s*#    .*)*)", re.M)


def annotated(source):
    """{setting name: its annotated default, as text}, read from the comments themselves."""
    found, name = {}, None
    for key, value in ANNOTATION.findall(source):
        value = " ".join(part.strip().lstrip("#").strip() for part in value.splitlines())
        if key == "setting_name":
            name = value
        elif key == "setting_default":
            found[name] = value
    return found


def test_annotations_name_every_setting_of_the_table_with_its_default():
    defaults = annotated(Path(common.__file__).read_text())
    ours = {name for name in defaults if name.startswith("CLICKHOUSE_OUTBOX_") and "<" not in name}
    assert ours == {setting.name for setting in SETTINGS}
    for setting in SETTINGS:
        shown = ast.literal_eval(defaults[setting.name])
        assert (shown, type(shown)) == (setting.default, type(setting.default)), setting.name
    assert ast.literal_eval(defaults[BACKEND_SETTING]) == DEFAULT_BACKEND_CONFIG


def test_the_annotations_are_what_the_table_gives():
    source = Path(common.__file__).read_text()
    assert docs.current_block(source) == docs.annotations(), "run scripts/settings-docs --write"
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "settings-docs"), "--check"],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr


def test_a_table_that_differs_from_the_annotations_is_caught():
    """The comparison above can fail: a changed default or a new setting shows up."""
    source = Path(common.__file__).read_text()
    changed = source.replace("# .. setting_default: 200000", "# .. setting_default: 40000")
    assert changed != source
    assert annotated(changed)["CLICKHOUSE_OUTBOX_BATCH_ROWS"] == "40000"
    assert docs.current_block(changed) != docs.annotations()


def test_the_reference_tables_list_every_setting_and_key():
    settings_table, keys_table = docs.reference_tables()
    for setting in SETTINGS:
        assert f"``{setting.name}``" in settings_table
    for key in DEFAULT_BACKEND_CONFIG:
        assert f"``{key}``" in keys_table
