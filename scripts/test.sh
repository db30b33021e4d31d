#!/usr/bin/env bash
# The test command (README, and .ci/run): set up the pinned environment, run the whole suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh" test
cd "$ROOT"
exec python -m pytest -q "$@"
