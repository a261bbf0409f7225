"""Seconds per model of our detector and MM-BD with glibc's default allocator and with freed memory kept.

``worker.allocator.retain_freed_memory`` keeps freed blocks up to 32 MB in the heap instead of
unmapping them, so a step's activation buffers are not faulted in and zeroed again at every step.
Every process that audits calls it (the CLI, the Celery workers, the benchmarks). This measures what
it buys. glibc adapts its thresholds to the blocks a process has freed, so what the setting saves
depends on the process's history: one child process per allocator mode audits every architecture
(registered, fresh seeded weights, loaded the way ``scan`` loads them) with both detectors, model
after model like a worker, ``--rounds`` times over, and reports each one's best time and the page
faults of the whole child. Prints one row per architecture; timings are of this machine with whatever
else it is running, so run it on an idle one.
Usage: python bench/allocator_speed.py [--cases small_cnn:1x28,resnet18:3x32] [--rounds 2] [--threads 1]
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
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.layout_speed import parse_case  # noqa: E402
from bench.scan_speed import save_fresh_model  # noqa: E402
from worker.examples import NUM_CLASSES  # noqa: E402
from worker.loading import registry  # noqa: E402
from worker.loading.types import CheckpointError  # noqa: E402

DEFAULT_CASES = (
    "small_cnn:1x28,lenet5:1x28,small_resnet:1x28,small_cnn:3x32,lenet5:3x32,shufflenet_v2_x0_5:3x32,"
    "mobilenet_v3_small:3x32,resnet18:3x32"
)
DETECTORS = ("agnostic", "mmbd")
MODES = ("default", "retained")


def measure(cases: list[str], mode: str, rounds: int, threads: int) -> dict[str, object]:
    """In this process: each case's best seconds per detector over ``rounds`` passes over all cases, and
    the process's minor page faults."""
    import torch

    from worker.allocator import retain_freed_memory
    from worker.detectors.base import get_detector
    from worker.loading.loader import load_checkpoint
    from worker.loading.types import ModelSpec

    if mode == "retained" and not retain_freed_memory():
        raise SystemExit("this C library has no mallopt: nothing to measure")
    torch.set_num_threads(threads)
    models = {}
    with tempfile.TemporaryDirectory() as folder:
        for case in cases:
            arch, channels, side = parse_case(case)
            path = Path(folder, f"{arch}-{channels}x{side}.safetensors")
            save_fresh_model(path, arch, channels)
            spec = ModelSpec(input_shape=(channels, side, side), num_classes=NUM_CLASSES, arch=arch)
            models[case] = (load_checkpoint(path, spec).module, (channels, side, side))
    best: dict[str, dict[str, float]] = {case: {} for case in cases}
    for _ in range(rounds):
        for case, (model, shape) in models.items():
            for name in DETECTORS:
                started = time.perf_counter()
                get_detector(name).detect(model, shape, NUM_CLASSES)
                seconds = time.perf_counter() - started
                best[case][name] = min(seconds, best[case].get(name, seconds))
    return {"best": best, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt}


def run_child(cases: str, mode: str, rounds: int, threads: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", mode, "--cases", cases, "--rounds", str(rounds)]
    command += ["--threads", str(threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"the {mode} child failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=DEFAULT_CASES, help="comma-separated arch:CxS (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="passes over all cases per child (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: one audit per core)")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1 or args.threads < 1:
        parser.error("--rounds and --threads must be at least 1")
    cases = args.cases.split(",")
    try:  # every case checked before a child starts
        for case in cases:
            registry.describe(parse_case(case)[0])
    except (ValueError, CheckpointError) as exc:
        print(f"error: bad case in --cases {args.cases!r} (arch:CxS, e.g. small_cnn:1x28): {exc}", file=sys.stderr)
        return 2
    if args.child:
        print(json.dumps(measure(cases, args.child, args.rounds, args.threads)))
        return 0
    runs = {mode: run_child(args.cases, mode, args.rounds, args.threads) for mode in MODES}
    default, kept = runs["default"]["best"], runs["retained"]["best"]
    print(f"best of {args.rounds} rounds, {args.threads} thread(s), {os.cpu_count()} cores")
    print(
        "| architecture | input | ours s (default / kept) | MM-BD s (default / kept) | ours / MM-BD (default / kept) |"
    )
    print("|---|---|---|---|---|")
    for case in cases:
        arch, channels, side = parse_case(case)
        before, after = default[case], kept[case]
        print(
            f"| {arch} | {channels}x{side}x{side} | {before['agnostic']:.2f} / {after['agnostic']:.2f} | "
            f"{before['mmbd']:.2f} / {after['mmbd']:.2f} | {before['agnostic'] / before['mmbd']:.2f} / "
            f"{after['agnostic'] / after['mmbd']:.2f} |"
        )
    totals = {mode: {name: sum(runs[mode]["best"][c][name] for c in cases) for name in DETECTORS} for mode in MODES}
    print(
        f"totals: ours {totals['default']['agnostic']:.1f} / {totals['retained']['agnostic']:.1f} s, "
        f"MM-BD {totals['default']['mmbd']:.1f} / {totals['retained']['mmbd']:.1f} s; page faults "
        f"{runs['default']['faults']:,} / {runs['retained']['faults']:,}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
