"""Detection benchmark: every registered detector on the same zoo models, in one run.

    python -m bench.detection --zoo .cache/zoo --split test [--json results.json]
    python -m bench.detection --quick          # builds .cache/zoo-quick first if it is missing

Models are loaded as ``scan`` loads them and results are cached next to the manifest
(``bench/runs.py``): an interrupted run resumes, a new detector costs only its own time and changed
code recomputes; cached results are reused only on the machine and thread count that computed them,
so the seconds a run compares were measured together. Neural Cleanse gets ``--clean-images`` images
(a multiple of 10, as many of each class) from the test split of the model's data set; the data-free
detectors get none. The figures are ``bench/summary.py``'s.

Reported per group (overall, each part, each attack family with all clean models of the selection):
AUROC of ``probability`` with its 95% bootstrap interval over models, and TPR at 5% FPR; the clean
false-positive rate at the detector's default threshold (verdict not "clean") with its 95% Wilson
interval; target top-1 on the backdoored models it flagged; cross-entropy of ``probability``; median
seconds per model.

Then our detector against each baseline on the same models (overall, each part): the AUROC
difference with a paired bootstrap interval, the median of the per-model time ratios and both total
times; and the times alone per part and architecture, where the time target is won or lost.
Last, the issue's targets for our detector, overall and per part, each met or missed
(``bench/targets.py``).

With ``--seeds N`` (odd) every detector runs with seeds S..S+N-1 (S = ``--seed``; each seed is cached
on its own) and a model's row is its median run (``worker.median_seed``, as ``scan --seeds`` reports),
timed as all N runs together.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from bench.runs import REPO, CacheError, machine_stamp, median_rows, run_detectors
from bench.summary import REFERENCE, compare, compare_times, summarise
from bench.tables import format_comparison, format_table, format_targets, format_times
from bench.targets import check_targets
from worker.audit import resolve_device
from worker.detectors.base import available, get_detector
from worker.files import check_writable, write_text_atomically
from worker.zoo.build import build_zoo, read_manifest
from worker.zoo.data import CLASSES, can_balance
from worker.zoo.provenance import build_hash

DEFAULT_ZOO = REPO / ".cache" / "zoo"
QUICK_ZOO = REPO / ".cache" / "zoo-quick"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.detection", description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", type=Path, default=None, help=f"zoo folder (default {DEFAULT_ZOO})")
    parser.add_argument("--quick", action="store_true", help=f"the quick zoo in {QUICK_ZOO}, built if missing")
    parser.add_argument("--split", choices=("dev", "test", "all"), default="test")
    parser.add_argument("--detectors", help=f"comma-separated subset of: {', '.join(available())}")
    parser.add_argument("--only", help="only model ids containing this text (e.g. 'rgb-')")
    parser.add_argument(
        "--clean-images",
        type=int,
        default=30,
        help="clean test images for detectors that need them (Neural Cleanse): a multiple of 10, as many of each "
        "class (default 30)",
    )
    parser.add_argument(
        "--config",
        type=json.loads,
        metavar="JSON",
        help="settings of the agnostic detector, as for `scan --config`: to benchmark a non-default engine or scorer",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="the detectors' random seed (rerun with others to see the spread)"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="odd N: run seeds SEED..SEED+N-1 and keep each model's median run, timed as all N runs (as scan --seeds)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto: where the detectors run")
    parser.add_argument("--json", type=Path, help="also write the rows and the summary here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        # every option is checked before the zoo is built or a model is loaded
        if args.threads is not None and args.threads < 1:
            raise ValueError("--threads must be at least 1")
        if args.seeds < 1 or args.seeds % 2 == 0:
            raise ValueError(f"--seeds {args.seeds}: use an odd number, so a model's median run is one of its runs")
        device = str(resolve_device(args.device))
        if args.json:
            check_writable(args.json)
        names = args.detectors.split(",") if args.detectors else available()
        unknown = sorted(set(names) - set(available()))
        if unknown:
            raise ValueError(f"unknown detectors {unknown}; available: {', '.join(available())}")
        detectors = [
            get_detector(name, config=args.config) if name == "agnostic" else get_detector(name) for name in names
        ]
        takers = [d.name for d in detectors if d.requires_clean_images]
        if takers and not can_balance(args.clean_images):
            raise ValueError(
                f"--clean-images {args.clean_images}: {', '.join(takers)} gets as many images of each of the "
                f"{CLASSES} classes, so give a positive multiple of {CLASSES}"
            )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    zoo = args.zoo or (QUICK_ZOO if args.quick else DEFAULT_ZOO)
    if args.quick and not (zoo / "manifest.json").is_file():
        build_zoo(zoo, quick=True)
    if not (zoo / "manifest.json").is_file():
        print(f"error: {zoo / 'manifest.json'} not found; build it with `backdoor-audit zoo build --out {zoo}`",
              file=sys.stderr)  # fmt: skip
        return 2
    manifest = read_manifest(zoo)
    entries = [m for m in manifest["models"] if args.split in ("all", m["split"])]
    if args.only:
        entries = [m for m in entries if args.only in m["id"]]
    if not entries:
        print(f"error: no models in {zoo} for split {args.split!r}", file=sys.stderr)
        return 2
    seeds = range(args.seed, args.seed + args.seeds)
    try:
        runs = [
            run_detectors(
                zoo,
                entries,
                detectors,
                clean_images=args.clean_images,
                cache=zoo / "bench-results.jsonl",
                seed=seed,
                device=device,
            )
            for seed in seeds
        ]
    except CacheError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = runs[0] if len(runs) == 1 else median_rows(runs)
    summary = summarise(rows)
    build = build_hash(manifest["models"])
    seeding = f"seed {args.seed}" if len(seeds) == 1 else f"median run of seeds {seeds[0]}-{seeds[-1]}"
    print(f"zoo {zoo} (build {build}) split {args.split}: {len(entries)} models, "
          f"detectors {', '.join(names)}, {seeding}")  # fmt: skip
    print(format_table(summary))
    comparisons = compare(rows)
    times = compare_times(rows)
    if comparisons:
        print()
        print(format_comparison(comparisons))
        print()
        print(format_times(times))
    targets = check_targets(summary, comparisons, REFERENCE)
    if targets:
        print()
        print(format_targets(targets))
    if args.json:
        payload = {
            "zoo_build": build,
            "machine": machine_stamp(device),  # every row's, as run_detectors reuses only this machine's
            "rows": rows,
            "summary": summary,
            "comparisons": comparisons,
            "times": times,
            "targets": targets,
        }
        write_text_atomically(args.json, json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
