"""
A course source for other processes (`CLICKHOUSE_OUTBOX_COURSE_SOURCE`) that makes two
workers start on a job together: it reads the OLX folder like `OlxFolderSource`, but the
first time a process makes one (`run_job` does, after the command started or joined the
job, before it plans or claims anything) it waits at a gate, the folder DUMP_TEST_GATE:
the process says it is there (`ready-PID`) and waits for the test to open it (`go`). No
transaction is open then, so the wait holds no database lock (SQLite's included). Every
course read is logged to `read-PID`, one key a line, and takes DUMP_TEST_READ_SECS more (a
slow modulestore), so that one process alone needs a while for the whole job.
"""

import os
import time
from pathlib import Path

from clickhouse_outbox.sources.base import CourseSourceError
from clickhouse_outbox.sources.olx import OlxFolderSource

WAIT_SECS = 120
_passed_gate = False


class GatedOlxSource(OlxFolderSource):
    def __init__(self, root=None):
        super().__init__(root)
        global _passed_gate  # noqa: PLW0603 (once per process, whatever the instance)
        self.gate = Path(os.environ["DUMP_TEST_GATE"])
        if not _passed_gate:
            (self.gate / f"ready-{os.getpid()}").touch()
            deadline = time.monotonic() + WAIT_SECS
            while not (self.gate / "go").exists():
                if time.monotonic() > deadline:
                    raise CourseSourceError(f"the test did not open the gate {self.gate} within {WAIT_SECS} s")
                time.sleep(0.02)
            _passed_gate = True

    def get_course(self, course_key):
        with open(self.gate / f"read-{os.getpid()}", "a", encoding="utf-8") as log:
            log.write(f"{course_key}\n")
        time.sleep(float(os.environ.get("DUMP_TEST_READ_SECS", "0")))
        return super().get_course(course_key)
