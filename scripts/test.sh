#!/usr/bin/env bash
# The test command: install what is missing, start Postgres and Redis, run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/services.sh
exec .venv/bin/python -m pytest "$@"
