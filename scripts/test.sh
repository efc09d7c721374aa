#!/usr/bin/env bash
# The whole test suite. Sets up the environment first (idempotent; see scripts/setup_env.sh).
# Runs on every core (pytest-xdist, at most 4 workers: each holds a few GB at its peak), a
# test file per worker so that module fixtures are built once; `-n 0` runs it in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
exec python -m pytest tests plugins -q -n auto --maxprocesses 4 --dist loadfile "$@"
