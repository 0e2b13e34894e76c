"""
Sphinx configuration of clickhouse_outbox's docs (``make docs``; Read the Docs runs the same).

The settings and commands references are generated at build time by ``_ext/outbox_reference.py``
from the code itself, so the package must be importable: ``make docs`` installs it (editable)
in ``.venv-docs`` with ``requirements/doc.txt``.
"""

import re
import sys
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(ROOT))

project = "clickhouse_outbox"
author = "The clickhouse_outbox authors"
copyright = f"{date.today().year}, {author}"  # noqa: A001 (Sphinx's name)
release = re.search(r'^__version__ = "([^"]+)"', (ROOT / "clickhouse_outbox" / "__init__.py").read_text(), re.M)[1]
version = release

extensions = ["outbox_reference"]
root_doc = "index"
exclude_patterns = ["_build"]
nitpicky = True

# The theme Open edX projects use (openedx-events, edx-platform's own docs).
html_theme = "sphinx_book_theme"
html_title = "clickhouse_outbox"
html_theme_options = {
    "repository_url": "https://github.com/openedx/clickhouse-outbox",
    "repository_branch": "main",
    "path_to_docs": "docs/",
    "home_page_in_toc": True,
    "use_repository_button": True,
    "use_issues_button": True,
    "use_edit_page_button": True,
    "navigation_with_keys": False,
}
html_show_sourcelink = False
html_static_path = ["_static"]
html_css_files = ["outbox.css"]
