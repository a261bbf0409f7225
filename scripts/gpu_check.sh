#!/usr/bin/env bash
# On a bare GPU machine that already has PyTorch (CUDA build) installed: install the project around that
# torch (never replacing it), run the GPU tests, and print scan timings on CUDA next to the CPU ones.
# Usage: bash scripts/gpu_check.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-check}
mkdir -p "$out"
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible to torch'; \
print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))"
# keep the preinstalled torch: install the project without dependencies, then its non-torch needs
python3 -m pip install -q --no-deps -e .
python3 -m pip install -q safetensors numpy pillow tqdm pytest fastapi pydantic pydantic-settings sqlalchemy \
  alembic celery redis httpx python-multipart jinja2 prometheus-client
python3 -m pytest -m gpu -q -p no:cacheprovider 2>&1 | tee "$out/gpu-tests.log"
python3 bench/scan_speed.py --device cuda --runs 3 2>&1 | tee "$out/scan-cuda.log"
python3 bench/scan_speed.py --device cpu --runs 1 2>&1 | tee "$out/scan-cpu.log"
