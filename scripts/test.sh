#!/usr/bin/env bash
# The whole test suite. Sets up the environment first (idempotent; see scripts/setup_env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
exec python -m pytest tests plugins -q "$@"
