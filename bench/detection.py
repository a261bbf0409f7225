"""Detection benchmark: every registered detector on the same zoo models, in one run.

    python -m bench.detection --zoo .cache/zoo --split test [--json results.json]
    python -m bench.detection --quick          # builds .cache/zoo-quick first if it is missing

Each model is loaded the way ``scan`` loads it (``load_checkpoint`` with the manifest's declared
architecture, shape and normalisation). Neural Cleanse gets ``--clean-images`` images from the test
split of the model's data set; the data-free detectors get none. Results are appended to a JSONL
cache next to the manifest, keyed by model sha256, the detector's settings and a hash of the detection
code, so an interrupted run resumes, a new detector costs only its own time and changed code recomputes.

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
import ast
import hashlib
import json
import statistics
import sys
from collections.abc import Iterable
from dataclasses import asdict
from functools import cache
from pathlib import Path
from typing import Any

import torch

from bench.targets import check_targets
from worker.allocator import retain_freed_memory
from worker.audit import resolve_device
from worker.detectors.base import Detection, Detector, available, get_detector
from worker.files import check_writable, write_text_atomically
from worker.median_seed import median_run
from worker.zoo import metrics
from worker.zoo.build import build_zoo, read_manifest
from worker.zoo.data import load_dataset
from worker.zoo.provenance import build_hash, this_machine

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ZOO = REPO / ".cache" / "zoo"
QUICK_ZOO = REPO / ".cache" / "zoo-quick"
REFERENCE = "agnostic"  # our detector: the one every baseline is compared with
LOADER = "worker.loading.loader"  # how every model reaches a detector (load_model)
# families that also get a group per part: the targets name a patch AUROC on each part
PER_PART_FAMILIES = ("badnets",)


def load_model(zoo: Path, entry: dict[str, Any], device: str = "cpu") -> torch.nn.Module:
    """The zoo model as ``scan`` would load it: through the safe loader, with the declared spec."""
    from worker.loading.loader import load_checkpoint
    from worker.loading.types import ModelSpec

    spec = ModelSpec(
        input_shape=tuple(entry["input_shape"]),
        num_classes=entry["num_classes"],
        arch=entry["arch"],
        mean=tuple(entry["mean"]) if entry["mean"] else None,
        std=tuple(entry["std"]) if entry["std"] else None,
    )
    return load_checkpoint(zoo / entry["path"], spec, device=device).module


def clean_images_for(dataset: str, count: int) -> torch.Tensor:
    """``count`` test images of the data set, class-balanced where it can be (for Neural Cleanse)."""
    images, labels = load_dataset(dataset).test
    per_class = max(1, count // 10)
    chosen = torch.cat([torch.nonzero(labels == k).flatten()[:per_class] for k in range(10)])
    return images[chosen[:count]]


def _module_file(name: str) -> Path | None:
    """The file of a first-party module (``worker.*``), or None for anything else."""
    if not name.startswith("worker."):
        return None
    base = REPO / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports, at any depth of its code (lazy imports included);
    ``from a import b`` yields both ``a`` and ``a.b``, since ``b`` may be a module."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@cache
def code_version(*modules: str) -> str:
    """A short hash of ``modules`` and every first-party module they import, transitively.

    Constants such as the scorer's calibration live in code, not in a detector's settings; keying
    the cache on this hash means a cached result never outlives the code that produced it, while a
    change to one detector's code leaves the others' results valid.
    """
    files: set[Path] = set()
    todo = list(modules)
    while todo:
        path = _module_file(todo.pop())
        if path is not None and path not in files:
            files.add(path)
            todo.extend(_imported_names(path))
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def detector_key(detector: Detector, seed: int = 0, device: str = "cpu") -> str:
    """Identifies a detector, its settings, seed and device *and the detection code* in the result cache.

    Dataclass detectors list every option in their repr; others are expected to hold their options
    in a ``config`` attribute with such a repr (a default object repr would never match again, which
    only costs a recomputation).
    """
    config = getattr(detector, "config", None)
    settings = f"{detector.name}:{config!r}" if config is not None else repr(detector)
    # seed 0 on the CPU keeps the keys that results had before seeds and devices were keyed
    run = (f"+seed={seed}" if seed else "") + (f"+device={device}" if device != "cpu" else "")
    # the loader is part of the detection: it chooses the layout the model runs in (finalize.py)
    return f"{settings}{run}@{code_version(type(detector).__module__, LOADER)}"


def run_detectors(
    zoo: Path,
    entries: list[dict[str, Any]],
    detectors: list[Detector],
    *,
    clean_images: int,
    cache: Path,
    seed: int = 0,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """One result row per (model, detector), from the cache where present, else computed and cached."""
    retain_freed_memory()  # as every auditing process does (worker/allocator.py); it times both detectors alike
    done: dict[tuple[str, str], dict[str, Any]] = {}
    if cache.is_file():
        for line in cache.read_text().splitlines():
            row = json.loads(line)
            done[(row["sha256"], row["detector_key"])] = row
    rows = []
    for entry in _progress(entries):
        model: torch.nn.Module | None = None
        for detector in detectors:
            key = (entry["sha256"], detector_key(detector, seed, device))
            if key not in done:
                model = model if model is not None else load_model(zoo, entry, device)
                images = (
                    clean_images_for(entry["dataset"], clean_images).to(device)
                    if detector.requires_clean_images
                    else None
                )
                detection = detector.detect(
                    model,
                    tuple(entry["input_shape"]),
                    entry["num_classes"],
                    device=device,
                    clean_images=images,
                    seed=seed,
                )
                done[key] = _row(entry, detector, detection, key[1])
                with cache.open("a") as handle:
                    handle.write(json.dumps(done[key]) + "\n")
            rows.append(
                {
                    **done[key],
                    "split": entry["split"],
                    "family": entry["family"],
                    "part": entry["part"],
                    "arch": entry["arch"],
                }
            )
    return rows


def median_rows(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (model, detector) from several seeds' runs of the same selection: the run at the
    median probability, its ``seconds`` the sum of all runs' (what the verdict cost) and ``seeds`` the
    runs' detector keys in seed order. Rows must be in the same order in every run."""
    combined = []
    for rows in zip(*runs, strict=True):
        if len({(r["model"], r["detector"]) for r in rows}) != 1:
            raise ValueError("the seeds' runs do not list the same models and detectors in the same order")
        median = rows[median_run([r["probability"] for r in rows])]
        combined.append(
            {**median, "seconds": sum(r["seconds"] for r in rows), "seeds": [r["detector_key"] for r in rows]}
        )
    return combined


def _row(entry: dict[str, Any], detector: Detector, detection: Detection, key: str) -> dict[str, Any]:
    result = asdict(detection)
    # per-class lists (features, anomaly indices) are kept: they let a scorer be studied without rerunning
    result["details"] = {k: v for k, v in result["details"].items() if _is_json(v)}
    return {
        "model": entry["id"],
        "sha256": entry["sha256"],
        "detector": detector.name,
        "detector_key": key,
        "backdoored": entry["backdoored"],
        "target_classes": entry["target_classes"],
        **result,
    }


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _progress(entries: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    from tqdm import tqdm

    return tqdm(entries, desc="benchmark", unit="model", file=sys.stderr)


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metrics per detector and group; a family's group pairs its backdoored models with every clean one,
    and a part's family group (``gray badnets``) the part's backdoored models with the part's clean ones."""
    summary = []
    for detector in sorted({r["detector"] for r in rows}):
        mine = [r for r in rows if r["detector"] == detector]
        clean = [r for r in mine if not r["backdoored"]]
        groups: dict[str, list[dict[str, Any]]] = {"overall": mine}
        parts = sorted({r["part"] for r in mine})
        for part in parts:
            groups[part] = [r for r in mine if r["part"] == part]
        for family in sorted({r["family"] for r in mine if r["backdoored"]}):
            groups[family] = [r for r in mine if r["family"] == family] + clean
        for part in parts if len(parts) > 1 else []:
            for family in PER_PART_FAMILIES:
                members = [r for r in mine if r["part"] == part and r["family"] in (family, "clean")]
                if any(r["backdoored"] for r in members):
                    groups[f"{part} {family}"] = members
        for group, members in groups.items():
            summary.append({"detector": detector, "group": group, **_metrics(members)})
    return summary


def _metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    labels = [int(r["backdoored"]) for r in rows]
    probabilities = [r["probability"] for r in rows]
    flagged = [r["verdict"] != "clean" for r in rows]
    detected = [r for r, flag in zip(rows, flagged, strict=True) if flag and r["backdoored"]]
    clean_flags = [f for f, y in zip(flagged, labels, strict=True) if not y]
    return {
        "backdoored": sum(labels),
        "clean": len(labels) - sum(labels),
        "auroc": metrics.auroc(probabilities, labels),
        "auroc_interval": metrics.auroc_interval(probabilities, labels),
        "tpr_at_5_fpr": metrics.tpr_at_fpr(probabilities, labels, 0.05),
        "clean_fpr": metrics.flag_rate(clean_flags),
        "clean_fpr_interval": metrics.flag_rate_interval(clean_flags),
        "detected": metrics.flag_rate([f for f, y in zip(flagged, labels, strict=True) if y]),
        "target_top1": metrics.target_top1(
            [r["suspected_classes"][0] for r in detected], [r["target_classes"] for r in detected]
        ),
        "cross_entropy": metrics.cross_entropy(probabilities, labels),
        "median_seconds": statistics.median(r["seconds"] for r in rows),
    }


Rows = dict[str, dict[str, Any]]  # one detector's rows by model id


def _paired(rows: list[dict[str, Any]], reference: str) -> tuple[Rows, dict[str, tuple[Rows, list[str]]]]:
    """The reference's rows by model, and per other detector its rows by model and the models both
    ran, in the reference's order; a detector that shares no model with the reference (a run of the
    baselines alone) has nothing to be compared on and is left out."""
    by_detector: dict[str, Rows] = {}
    for row in rows:
        by_detector.setdefault(row["detector"], {})[row["model"]] = row
    mine = by_detector.get(reference, {})
    others = {}
    for other in sorted(set(by_detector) - {reference}):
        shared = [m for m in mine if m in by_detector[other]]
        if shared:
            others[other] = (by_detector[other], shared)
    return mine, others


def _timing(mine: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> dict[str, Any]:
    """Paired rows of two detectors: the median of the per-model time ratios (below 1: the first is
    faster), on how many models the first was faster, and both total times."""
    ratios = [a["seconds"] / b["seconds"] for a, b in zip(mine, theirs, strict=True)]
    return {
        "median_time_ratio": statistics.median(ratios),
        "faster_on": sum(r < 1 for r in ratios),
        "seconds": (sum(a["seconds"] for a in mine), sum(b["seconds"] for b in theirs)),
    }


def compare(rows: list[dict[str, Any]], reference: str = REFERENCE) -> list[dict[str, Any]]:
    """``reference`` against every other detector on the models both ran, overall and per part: the
    AUROC difference (reference minus other) with its paired bootstrap interval, and the timing
    (``_timing``)."""
    mine, others = _paired(rows, reference)
    comparisons = []
    for other, (theirs, shared) in others.items():
        for group in ["overall", *sorted({mine[m]["part"] for m in shared})]:
            models = [m for m in shared if group in ("overall", mine[m]["part"])]
            labels = [int(mine[m]["backdoored"]) for m in models]
            difference, low, high = metrics.auroc_difference(
                [mine[m]["probability"] for m in models], [theirs[m]["probability"] for m in models], labels
            )
            comparisons.append(
                {
                    "reference": reference,
                    "other": other,
                    "group": group,
                    "models": len(models),
                    "auroc_difference": difference,
                    "interval": (low, high),
                    **_timing([mine[m] for m in models], [theirs[m] for m in models]),
                }
            )
    return comparisons


def compare_times(rows: list[dict[str, Any]], reference: str = REFERENCE) -> list[dict[str, Any]]:
    """``reference``'s time against every other detector's per part and architecture, on the models
    both ran (``_timing``); an architecture's small nets and large ones can fall on either side of 1."""
    mine, others = _paired(rows, reference)
    comparisons = []
    for other, (theirs, shared) in others.items():
        for part, arch in sorted({(mine[m]["part"], mine[m]["arch"]) for m in shared}):
            models = [m for m in shared if (mine[m]["part"], mine[m]["arch"]) == (part, arch)]
            comparisons.append(
                {
                    "reference": reference,
                    "other": other,
                    "part": part,
                    "arch": arch,
                    "models": len(models),
                    **_timing([mine[m] for m in models], [theirs[m] for m in models]),
                }
            )
    return comparisons


def _number(value: float, digits: int = 2) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"


def _interval(bounds: tuple[float, float]) -> str:
    low, high = bounds
    return f" ({_number(low)}-{_number(high)})" if low == low else ""


def _time_cells(c: dict[str, Any]) -> str:
    ours, theirs = c["seconds"]
    return f"{c['median_time_ratio']:.2f} | {c['faster_on']} of {c['models']} | {ours:.0f} / {theirs:.0f} |"


def _markdown(header: str, lines: list[str]) -> str:
    return "\n".join([header, "|" + "---|" * (header.count("|") - 1), *lines])


def format_comparison(comparisons: list[dict[str, Any]]) -> str:
    """A Markdown table, one row per baseline and group."""
    header = (
        "| ours vs | group | models | AUROC difference (95% CI) | median time ratio | ours faster on "
        "| total s (ours / other) |"
    )
    return _markdown(
        header,
        [
            f"| {c['other']} | {c['group']} | {c['models']} | {c['auroc_difference']:+.2f} "
            f"({_number(c['interval'][0])} to {_number(c['interval'][1])}) | {_time_cells(c)}"
            for c in comparisons
        ],
    )


def format_times(comparisons: list[dict[str, Any]]) -> str:
    """A Markdown table, one row per baseline, part and architecture."""
    header = "| ours vs | part | architecture | models | median time ratio | ours faster on | total s (ours / other) |"
    return _markdown(
        header,
        [f"| {c['other']} | {c['part']} | {c['arch']} | {c['models']} | {_time_cells(c)}" for c in comparisons],
    )


def format_targets(results: list[dict[str, Any]]) -> str:
    """A Markdown table of ``bench.targets.check_targets``: one row per target, one column per group,
    each cell the value and its verdict."""
    groups = list(dict.fromkeys(r["group"] for r in results))
    cells: dict[str, dict[str, str]] = {}
    for r in results:
        verdict = {True: "met", False: "**missed**", None: "n/a"}[r["met"]]
        value = "" if r["value"] != r["value"] else f"{r['value']:.3f} "
        cells.setdefault(r["target"], {})[r["group"]] = value + verdict
    return _markdown(
        "| target | " + " | ".join(groups) + " |",
        [f"| {target} | " + " | ".join(row.get(g, "") for g in groups) + " |" for target, row in cells.items()],
    )


def format_table(summary: list[dict[str, Any]]) -> str:
    """A Markdown table, one row per detector and group; AUROC and CE to three decimals, since the
    targets (0.95, 0.98, 0.30) are judged on them."""
    header = "| detector | group | bd/clean | AUROC (95% CI) | TPR@5%FPR | clean FPR (95% CI) | detected |"
    header += " target top-1 | CE | median s |"
    return _markdown(
        header,
        [
            f"| {s['detector']} | {s['group']} | {s['backdoored']}/{s['clean']} | "
            f"{_number(s['auroc'], 3)}{_interval(s['auroc_interval'])} | {_number(s['tpr_at_5_fpr'])} | "
            f"{_number(s['clean_fpr'])}{_interval(s['clean_fpr_interval'])} | {_number(s['detected'])} | "
            f"{_number(s['target_top1'])} | {_number(s['cross_entropy'], 3)} | {s['median_seconds']:.1f} |"
            for s in summary
        ],
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.detection", description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", type=Path, default=None, help=f"zoo folder (default {DEFAULT_ZOO})")
    parser.add_argument("--quick", action="store_true", help=f"the quick zoo in {QUICK_ZOO}, built if missing")
    parser.add_argument("--split", choices=("dev", "test", "all"), default="test")
    parser.add_argument("--detectors", help=f"comma-separated subset of: {', '.join(available())}")
    parser.add_argument("--only", help="only model ids containing this text (e.g. 'rgb-')")
    parser.add_argument("--clean-images", type=int, default=30, help="clean images for detectors that need them")
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
            "machine": this_machine(),
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
