"""Wall time of the default ``backdoor-audit scan`` on the 10-class 1x28x28 example SmallCNN.

Measures what a user waits for: a fresh process (interpreter start, torch import, checkpoint load,
maps, scoring, report writing). Prints one line per run and a summary; the target is <= 30 s on two
CPU cores. ``--arch NAME`` times a registered architecture (``backdoor-audit archs``) with fresh seeded
weights instead, for the cost of larger nets; its verdict then means nothing.
Usage: python bench/scan_speed.py [--runs 3] [--device cpu|cuda] [--threads N] [--arch resnet18 --input-shape 3,32,32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from worker.examples import NUM_CLASSES, example_model  # noqa: E402
from worker.loading.types import CheckpointError  # noqa: E402


def save_fresh_model(path: Path, arch: str, channels: int) -> None:
    """Save ``arch`` with seeded fresh weights (10 classes) to ``path``: for timings, whose verdicts mean nothing."""
    import torch

    from worker.loading import registry
    from worker.zoo.train import save_weights

    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_weights(registry.build(arch, num_classes=NUM_CLASSES, in_channels=channels), path)


def fresh_model_args(cache: Path, arch: str, input_shape: str) -> list[str]:
    """Save ``arch`` with seeded fresh weights under ``cache``; return its scan arguments."""
    path = cache / f"fresh-{arch}-{input_shape.replace(',', 'x')}.safetensors"
    save_fresh_model(path, arch, int(input_shape.split(",")[0]))
    return [str(path), "--arch", arch, "--input-shape", input_shape, "--num-classes", str(NUM_CLASSES)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "test-models")
    parser.add_argument("--arch", help="time this registered architecture with fresh weights (default: the example)")
    parser.add_argument("--input-shape", default="3,32,32", metavar="C,H,W", help="with --arch (default: 3,32,32)")
    args = parser.parse_args()

    if args.arch:
        try:
            scan_args = fresh_model_args(args.cache, args.arch, args.input_shape)
        except CheckpointError as exc:  # an unknown architecture name
            print(f"error: {exc}", file=sys.stderr)
            return 2
    else:
        scan_args = example_model(args.cache, backdoored=True).cli_args()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    walls = []
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory() as out:
            command = [sys.executable, "-m", "app.cli", "scan", *scan_args, "--quiet"]
            command += ["--out", f"{out}/r", "--device", args.device]
            started = time.perf_counter()
            result = subprocess.run(command, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - started
            report_path = Path(out, "r", "report.json")
            if result.returncode not in (0, 1) or not report_path.is_file():
                print(result.stderr, file=sys.stderr)
                return 2
            report = json.loads(report_path.read_text())
        walls.append(wall)
        print(
            f"run {run}: wall {wall:.1f} s (audit {report['seconds']:.1f} s in-process), verdict {report['verdict']}, "
            f"suspected {report['suspected_classes']}"
        )
    target = "" if args.arch else " (target <= 30 s)"
    print(
        f"scan wall time of {args.arch or 'the example'} on {args.device} "
        f"({os.cpu_count()} cores, torch threads: {args.threads or 'default'}): "
        f"median {statistics.median(walls):.1f} s, "
        f"min {min(walls):.1f} s, max {max(walls):.1f} s over {len(walls)} runs{target}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
