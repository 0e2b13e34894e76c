#!/usr/bin/env bash
# Build (or bring up to date) the peer's virtualenv: .bench/peer-venv under the repo root.
#
# Installs openedx-event-sink-clickhouse 1.1.1 and its run-time needs from
# bench/peer/requirements.txt, and makes this repository's `clickhouse_outbox` package
# importable there (a .pth naming a folder that holds only a symlink to it), so the
# stand-in modulestore can build courses with clickhouse_outbox.testing.generator.
# Idempotent: does nothing when the venv matches requirements.txt already.
#
#   PYTHON=python3.11 bench/peer/setup_venv.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
BENCH_DIR="$REPO/.bench"
VENV="$BENCH_DIR/peer-venv"
REQS="$HERE/requirements.txt"
STAMP="$VENV/.requirements.sha256"

mkdir -p "$BENCH_DIR"
# .bench/ is not in the repository's .gitignore: keep it out of git from the inside.
[ -f "$BENCH_DIR/.gitignore" ] || printf '*\n' > "$BENCH_DIR/.gitignore"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
version="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$version" != "3.11" ]; then
    echo "setup_venv.sh: $VENV runs Python $version, expected 3.11 (remove it and set PYTHON)" >&2
    exit 1
fi

want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS"
    echo "$want" > "$STAMP"
fi

# clickhouse_outbox, and nothing else from the repository, on the venv's path.
site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
link_dir="$VENV/clickhouse-outbox-src"
mkdir -p "$link_dir"
ln -sfn "$REPO/clickhouse_outbox" "$link_dir/clickhouse_outbox"
echo "$link_dir" > "$site/clickhouse_outbox_repo.pth"

"$VENV/bin/python" - <<'PY'
import event_sink_clickhouse
import clickhouse_outbox.testing.generator  # noqa: F401
print(f"peer venv ready: openedx-event-sink-clickhouse {event_sink_clickhouse.__version__}")
PY
