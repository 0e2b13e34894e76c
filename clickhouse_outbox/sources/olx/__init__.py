"""
The OLX course source: course exports (folders or tarballs, as Studio writes them) read into
`PublishedCourse`s, for the standalone project and tests. One module per idea:

* `reader`: the export's XML and policies read into a course, by edx-platform's import rules;
* `values`: attribute and policy values coerced like the platform's fields;
* `files`: the export's files, opened only inside its folder and within the bounds;
* `parsing`: XML (entities refused) and JSON parsed within the bounds;
* `tarball`: export tarballs extracted without trusting their members;
* `limits`: the bounds (the CLICKHOUSE_OUTBOX_OLX_MAX_* settings);
* `store`: `OlxFolderSource`, the folder of exports the CLICKHOUSE_OUTBOX_OLX_DIR setting names.

The names below are the package's public ones (settings name
`clickhouse_outbox.sources.olx.OlxFolderSource`).
"""

from clickhouse_outbox.sources.olx.errors import OlxError
from clickhouse_outbox.sources.olx.limits import Limits
from clickhouse_outbox.sources.olx.reader import (
    CONTAINER_TYPES,
    DISPLAY_NAME_DEFAULTS,
    SAMPLE_COURSE_DIR,
    completion_mode,
    read_olx_export,
)
from clickhouse_outbox.sources.olx.store import OlxFolderSource, folder_name
from clickhouse_outbox.sources.olx.tarball import extract_tarball

__all__ = [
    "CONTAINER_TYPES", "DISPLAY_NAME_DEFAULTS", "SAMPLE_COURSE_DIR", "Limits", "OlxError", "OlxFolderSource",
    "completion_mode", "extract_tarball", "folder_name", "read_olx_export",
]
