"""Wall time of the default ``backdoor-audit scan`` on the 10-class 1x28x28 example SmallCNN.

Measures what a user waits for: a fresh process (interpreter start, torch import, checkpoint load,
maps, scoring, report writing). Prints one line per run and a summary; the target is <= 30 s on two
CPU cores. Usage: python bench/scan_speed.py [--runs 3] [--device cpu|cuda] [--threads N]
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

from worker.examples import example_model  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "test-models")
    args = parser.parse_args()

    example = example_model(args.cache, backdoored=True)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    walls = []
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory() as out:
            command = [sys.executable, "-m", "app.cli", "scan", *example.cli_args(), "--quiet"]
            command += ["--out", f"{out}/r", "--device", args.device]
            started = time.perf_counter()
            result = subprocess.run(command, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - started
            if result.returncode not in (0, 1):
                print(result.stderr, file=sys.stderr)
                return 2
            report = json.loads(Path(out, "r", "report.json").read_text())
        walls.append(wall)
        print(
            f"run {run}: wall {wall:.1f} s (audit {report['seconds']:.1f} s in-process), verdict {report['verdict']}, "
            f"suspected {report['suspected_classes']}"
        )
    print(
        f"scan wall time on {args.device} ({os.cpu_count()} cores, torch threads: {args.threads or 'default'}): "
        f"median {statistics.median(walls):.1f} s, "
        f"min {min(walls):.1f} s, max {max(walls):.1f} s over {len(walls)} runs (target <= 30 s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
