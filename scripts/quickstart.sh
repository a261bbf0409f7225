#!/usr/bin/env bash
# Quick start: install into ./.venv, train a small backdoored Fashion-MNIST example model, scan it.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKDOOR_AUDIT_SERVICES=0 bash scripts/install.sh
exec .venv/bin/backdoor-audit demo "$@"
