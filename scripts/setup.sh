#!/usr/bin/env bash
# Shared by scripts/demo.sh and scripts/test.sh: a project virtualenv with pinned dependencies.
# Needs only Python 3.11 and the package index; idempotent (re-runs are a quick no-op check).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${HQMS_PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV="${HQMS_VENV:-$ROOT/.venv}"
EXTRAS="${1:-}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.hqms-installed${EXTRAS:+-$EXTRAS}"
if [ ! -f "$STAMP" ] || [ "$ROOT/constraints.txt" -nt "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -c "$ROOT/constraints.txt" -e "$ROOT${EXTRAS:+[$EXTRAS]}"
  touch "$STAMP"
fi
# The test set-up also needs Debian's Chromium (browser tests of the web pages, the bulletin and the
# Airflow grid) and a CJK font (without it every Chinese character renders as a box).
if [ "$EXTRAS" = "test" ] && { ! command -v chromium >/dev/null 2>&1 || [ ! -d /usr/share/fonts/opentype/noto ]; }; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null
  else
    echo "setup: browser tests need Debian's chromium and fonts-noto-cjk (apt-get install chromium fonts-noto-cjk)" >&2
  fi
fi
export PATH="$VENV/bin:$PATH"
