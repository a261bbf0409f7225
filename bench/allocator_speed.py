"""Seconds per model of our detector and MM-BD with glibc's default allocator and with freed memory kept.

``worker.allocator.retain_freed_memory`` keeps freed blocks up to 32 MB in the heap instead of
unmapping them, so a step's activation buffers are not faulted in and zeroed again at every step.
Every process that audits calls it (the CLI, the Celery workers, the benchmarks). This measures what
it buys: for each architecture (registered, fresh seeded weights, loaded the way ``scan`` loads them)
one child process per allocator mode runs both detectors ``--repeats`` times and reports the best
time of each and the page faults of the whole child. Prints one row per architecture; the timings
are of this machine with whatever else it is running, so run it on an idle one.
Usage: python bench/allocator_speed.py [--cases small_cnn:1x28,resnet18:3x32] [--repeats 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.layout_speed import parse_case  # noqa: E402

DEFAULT_CASES = (
    "small_cnn:1x28,lenet5:1x28,small_resnet:1x28,small_cnn:3x32,lenet5:3x32,shufflenet_v2_x0_5:3x32,"
    "mobilenet_v3_small:3x32,resnet18:3x32"
)
DETECTORS = ("agnostic", "mmbd")
MODES = ("default", "retained")


def measure(case: str, mode: str, repeats: int, threads: int) -> dict[str, float]:
    """In this process: best seconds of each detector on ``case``, and the process's minor page faults."""
    import torch

    from worker.allocator import retain_freed_memory
    from worker.detectors.base import get_detector
    from worker.loading import registry
    from worker.loading.loader import load_checkpoint
    from worker.loading.types import ModelSpec
    from worker.zoo.train import save_weights

    if mode == "retained" and not retain_freed_memory():
        raise SystemExit("this C library has no mallopt: nothing to measure")
    torch.set_num_threads(threads)
    arch, channels, side = parse_case(case)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "model.safetensors")
        save_weights(registry.build(arch, num_classes=10, in_channels=channels), path)
        spec = ModelSpec(input_shape=(channels, side, side), num_classes=10, arch=arch)
        model = load_checkpoint(path, spec).module
    best = {}
    for name in DETECTORS:
        detector = get_detector(name)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            detector.detect(model, (channels, side, side), 10)
            times.append(time.perf_counter() - started)
        best[name] = min(times)
    return {**best, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt}


def run_child(case: str, mode: str, repeats: int, threads: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", mode, "--cases", case, "--repeats", str(repeats)]
    command += ["--threads", str(threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{case} ({mode}) failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=DEFAULT_CASES, help="comma-separated arch:CxS (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: one audit per core)")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be at least 1")
    if args.child:
        print(json.dumps(measure(args.cases, args.child, args.repeats, args.threads)))
        return 0
    print(f"best of {args.repeats} per detector, {args.threads} thread(s), {os.cpu_count()} cores")
    print(
        "| architecture | input | ours s (default / kept) | MM-BD s (default / kept) | ours / MM-BD "
        "(default / kept) | page faults (default / kept) |"
    )
    print("|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        arch, channels, side = parse_case(case)
        runs = {mode: run_child(case, mode, args.repeats, args.threads) for mode in MODES}
        default, kept = runs["default"], runs["retained"]
        print(
            f"| {arch} | {channels}x{side}x{side} | {default['agnostic']:.2f} / {kept['agnostic']:.2f} | "
            f"{default['mmbd']:.2f} / {kept['mmbd']:.2f} | {default['agnostic'] / default['mmbd']:.2f} / "
            f"{kept['agnostic'] / kept['mmbd']:.2f} | {default['faults']:,.0f} / {kept['faults']:,.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
