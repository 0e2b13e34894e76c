"""
The test server fixtures fail loudly when the server is not configured: never a silent skip.
"""

import os
import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]


def test_unconfigured_server_fails_with_how_to_start_it(tmp_path):
    (tmp_path / "test_needs_server.py").write_text("def test_it(http_backend):\n    pass\n")
    env = {name: value for name, value in os.environ.items() if not name.startswith("CLICKHOUSE_TEST_")}
    env["PYTHONPATH"] = str(PROJECT_DIR)

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.clickhouse_fixtures", "-p", "no:django", "-p", "no:cacheprovider",
         "-q", str(tmp_path / "test_needs_server.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )

    assert result.returncode == 1, result.stdout
    assert "1 error" in result.stdout
    assert "skipped" not in result.stdout
    assert "start it: scripts/clickhouse-test-server start; eval $(scripts/clickhouse-test-server env)" in result.stdout
