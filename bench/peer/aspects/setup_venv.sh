#!/usr/bin/env bash
# Build (or bring up to date) the second peer's virtualenv: .bench/aspects-venv under the
# repo root, with platform-plugin-aspects 2.1.0 and its run-time needs from
# bench/peer/aspects/requirements.txt, and this repository's clickhouse_outbox package
# importable there (a .pth naming a folder that holds only a symlink to it) for the stand-in
# modulestore's generated courses. The package requires Python >= 3.12: PYTHON names
# the interpreter, else python3.12 on the PATH, else pyenv's 3.12.
# Idempotent: does nothing when the venv matches requirements.txt already.
#
#   PYTHON=/path/to/python3.12 bench/peer/aspects/setup_venv.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
BENCH_DIR="$REPO/.bench"
VENV="$BENCH_DIR/aspects-venv"
REQS="$HERE/requirements.txt"
STAMP="$VENV/.requirements.sha256"

mkdir -p "$BENCH_DIR"
# .bench/ is not in the repository's .gitignore: keep it out of git from the inside.
[ -f "$BENCH_DIR/.gitignore" ] || printf '*\n' > "$BENCH_DIR/.gitignore"

find_python() {
    if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
    if python3.12 -c '' 2>/dev/null; then echo python3.12; return; fi
    if command -v pyenv >/dev/null && prefix="$(pyenv prefix 3.12 2>/dev/null)" && [ -x "$prefix/bin/python3.12" ]; then
        echo "$prefix/bin/python3.12"; return
    fi
    echo "setup_venv.sh: no Python 3.12 found (set PYTHON=/path/to/python3.12)" >&2
    exit 1
}

if [ ! -x "$VENV/bin/python" ]; then
    "$(find_python)" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
    echo "setup_venv.sh: $VENV runs Python < 3.12; platform-plugin-aspects 2.1.0 needs 3.12 (remove it and set PYTHON)" >&2
    exit 1
fi

want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS"
    echo "$want" > "$STAMP"
fi

# clickhouse_outbox, and nothing else from the repository, on the venv's path: the stand-in
# modulestore of the course scenarios builds its courses with clickhouse_outbox.testing.generator
# (as bench/peer/setup_venv.sh does for the other peer; the peer itself never imports it).
site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
link_dir="$VENV/clickhouse-outbox-src"
mkdir -p "$link_dir"
ln -sfn "$REPO/clickhouse_outbox" "$link_dir/clickhouse_outbox"
echo "$link_dir" > "$site/clickhouse_outbox_repo.pth"

"$VENV/bin/python" - <<'PY'
from importlib.metadata import version

import celery  # noqa: F401
import openedx_events  # noqa: F401
import platform_plugin_aspects  # noqa: F401
import redis  # noqa: F401

import clickhouse_outbox.testing.generator  # noqa: F401

print(f"aspects peer venv ready: platform-plugin-aspects {version('platform-plugin-aspects')}")
PY
