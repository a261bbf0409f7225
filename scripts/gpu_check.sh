#!/usr/bin/env bash
# On a GPU machine whose python3 already has a CUDA build of PyTorch: run every GPU test (loading onto
# CUDA, the map engine on CUDA, and serve's Celery worker auditing on CUDA end to end), then time scans
# on CUDA next to the CPU, for the example SmallCNN and a torchvision resnet18.
#
# The preinstalled torch is kept. The project runs from this checkout (PYTHONPATH), so nothing is
# installed into the system. The Python packages the machine lacks are installed into a scratch folder:
# from wheels in .whl/ when that folder holds any (for machines without network access), else from the
# package index. The test fixtures train their example models on Fashion-MNIST unless
# .cache/test-models already holds them (carry that folder to a machine without the data set).
# Usage: bash scripts/gpu_check.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-check}
mkdir -p "$out"
site=${TMPDIR:-/tmp}/backdoor-audit-site
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
else
  # pyproject's requirements and the worker extra's, all but torch (the machine's own stays), plus pytest
  mapfile -t needs < <(python3 -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(r for r in p['dependencies'] + p['optional-dependencies']['worker'] + ['pytest'] \
if not r.startswith('torch')))")
  python3 -m pip install -q --target "$site" "${needs[@]}"
fi
export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible to torch'; \
print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))" | tee "$out/device.txt"

mapfile -t gpu_tests < <(grep -rl "mark.gpu" tests --include='test_*.py')
status=0
python3 -m pytest -m gpu -v -p no:cacheprovider "${gpu_tests[@]}" 2>&1 | tee "$out/gpu-tests.log" || status=1

python3 bench/scan_speed.py --device cuda --runs 3 2>&1 | tee "$out/scan-speed.log" || status=1
python3 bench/scan_speed.py --device cpu --runs 1 2>&1 | tee -a "$out/scan-speed.log" || status=1
python3 bench/scan_speed.py --device cuda --runs 2 --arch resnet18 2>&1 | tee -a "$out/scan-speed.log" || status=1
python3 bench/scan_speed.py --device cpu --runs 1 --arch resnet18 2>&1 | tee -a "$out/scan-speed.log" || status=1
exit $status
