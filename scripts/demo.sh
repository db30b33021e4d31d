#!/usr/bin/env bash
# Main job on the embedded default: generate a week of uploads for a few dozen synthetic
# hospitals, submit them, run ingest and marts through Airflow, print a summary of the marts.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec hqms demo "$@"
