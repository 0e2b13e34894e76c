"""
How much one OLX export may hold (the CLICKHOUSE_OUTBOX_OLX_MAX_* settings): an export is
handed over by whoever wrote it, so every size the reader or the extraction meets is bounded,
and each bound is checked before the work it protects.
"""

from dataclasses import dataclass

from clickhouse_outbox import conf


@dataclass(frozen=True)
class Limits:
    """The bounds of one read, extraction or copy; `from_settings()` reads them at call time."""

    file_bytes: int = conf.DEFAULTS["CLICKHOUSE_OUTBOX_OLX_MAX_FILE_BYTES"]
    value_bytes: int = conf.DEFAULTS["CLICKHOUSE_OUTBOX_OLX_MAX_VALUE_BYTES"]
    depth: int = conf.DEFAULTS["CLICKHOUSE_OUTBOX_OLX_MAX_DEPTH"]
    export_bytes: int = conf.DEFAULTS["CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_BYTES"]
    export_files: int = conf.DEFAULTS["CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_FILES"]
    blocks: int = conf.DEFAULTS["CLICKHOUSE_OUTBOX_OLX_MAX_BLOCKS"]

    @classmethod
    def from_settings(cls):
        return cls(
            file_bytes=conf.olx_max_file_bytes(),
            value_bytes=conf.olx_max_value_bytes(),
            depth=conf.olx_max_depth(),
            export_bytes=conf.olx_max_export_bytes(),
            export_files=conf.olx_max_export_files(),
            blocks=conf.olx_max_blocks(),
        )


class Budget:
    """What an export has used so far of `export_files` and `export_bytes`, counted as it goes."""

    def __init__(self, limits):
        self.limits = limits
        self.files = 0
        self.bytes = 0

    def spend(self, size):
        """Count one more file of `size` bytes; the reason it does not fit, or None."""
        self.files += 1
        self.bytes += size
        if self.files > self.limits.export_files:
            return f"more than {self.limits.export_files} files (CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_FILES)"
        if self.bytes > self.limits.export_bytes:
            return f"more than {self.limits.export_bytes} bytes (CLICKHOUSE_OUTBOX_OLX_MAX_EXPORT_BYTES)"
        return None
