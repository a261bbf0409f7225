"""Fit the agnostic scorer's calibration, evidence -> P(backdoored), on benchmark rows.

    python -m bench.calibrate --split dev --seeds 0,1,2 --save bench/calibration/BUILD.jsonl
    python -m bench.calibrate --rows bench/calibration/*.jsonl       # pooled over saved zoo builds

The scorer maps a model's largest class lead l (a class's evidence less a share of its strongest
rivals' evidence, ``worker.scoring.calibration.class_leads``) to P = 1 / (1 + exp(-slope * (l -
centre))), with one slope and one centre per input kind (``gray``: one channel; ``colour``: any other
count), the constants in ``worker/scoring/calibration.py``. For each slope of a grid this command
fits both centres by maximum likelihood on the rows (one per model and saliency seed) and prints the
cross-entropy in sample, leaving one model out (all its seeds, in every build) and, once rows of two
or more zoo builds are pooled, leaving one build out: how a calibration fitted on other builds does on
a new one, which is the question a centre fitted on one build's luck cannot answer (weights that
several builds hold, the same sha256 trained again, are kept once, preferring the rows the current
detection code computed). Rows are held out only where the other builds' (or models') rows of their
kind hold both labels; the others are counted, and a figure with no row to hold out is n/a. Beside
them: the current constants on the same rows, and the threshold check (clean rows and backdoored rows
at or above ``suspicious_at``). A kind whose lead counts rivals needs every class's evidence: saved
rows of that kind without ``class_evidence`` (saved before it was kept) are left out, and counted.

Rows come from the zoo's benchmark cache (computed where missing, as ``bench.detection`` does) and from
saved rows files; ``--save`` writes the zoo's rows as JSON lines, so a later session's build can be
pooled with this one. A row is {zoo, model, seed, kind, backdoored, evidence, detector_key, sha256,
class_evidence}; rows whose detector key differs come from different scorer code, and the report
counts them per key.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from worker.files import check_writable, write_text_atomically
from worker.scoring.calibration import LEAD_CENTRES, LEAD_SLOPE, RIVAL_WEIGHTS, class_leads
from worker.scoring.score import input_kind
from worker.scoring.verdict import backdoor_probability
from worker.zoo import metrics

KINDS = tuple(LEAD_CENTRES)  # the input kinds the scorer calibrates separately
CHOSEN_BY = {  # what ``report`` chose the best slope by, as the report says it
    "leave_one_build_out": "leave one build out",
    "leave_one_model_out": "leave one model out",
    "cross_entropy": "in-sample cross-entropy (no row could be held out)",
}
SLOPES = (1.0, 1.25, 1.5, 2.0, 3.0)


@dataclass(frozen=True)
class Row:
    zoo: str  # which zoo build the model came from (a hash of its manifest's model files)
    model: str
    seed: int
    kind: str  # "gray" | "colour"
    backdoored: bool
    evidence: float  # the model's largest class evidence
    detector_key: str
    sha256: str | None = None  # of the model's weights file; rows saved before it was recorded have none
    # every class's evidence in class order (``evidence`` is their maximum), so a later round can screen
    # a model score built from all classes on every saved build; rows saved before it have none
    class_evidence: tuple[float, ...] | None = None

    @property
    def has_lead(self) -> bool:
        """Whether the row can give its lead: a kind whose lead counts rivals needs every class's evidence."""
        return RIVAL_WEIGHTS[self.kind] == 0 or self.class_evidence is not None

    @property
    def lead(self) -> float:
        """The model's largest class lead, what the scorer's logistic reads."""
        if not self.has_lead:
            raise ValueError(f"a {self.kind} row's lead needs its class_evidence")
        return self.evidence if self.class_evidence is None else max(class_leads(self.class_evidence, self.kind))


@dataclass(frozen=True)
class Calibration:
    slope: float
    centres: dict[str, float]

    def probability(self, row: Row) -> float:
        if row.kind not in self.centres:
            raise ValueError(f"no {row.kind} rows left to fit a {row.kind} centre on")
        return backdoor_probability(row.lead, centre=self.centres[row.kind], slope=self.slope)

    def threshold(self, kind: str, probability: float) -> float:
        """The lead at which a row of ``kind`` reaches ``probability``."""
        return self.centres[kind] + math.log(probability / (1 - probability)) / self.slope


def fit_centre(leads: np.ndarray, labels: np.ndarray, slope: float) -> float:
    """The maximum-likelihood centre for a fixed slope: where the probabilities sum to the positives.

    The cross-entropy is convex in the centre and its derivative is proportional to sum(p) - sum(y),
    which falls as the centre rises, so bisection finds the root. Both labels must be present.
    """
    positives = int(labels.sum())
    if positives in (0, len(labels)):
        raise ValueError("a centre needs backdoored and clean rows of the same input kind")
    low, high = float(leads.min()) - 50 / slope, float(leads.max()) + 50 / slope
    for _ in range(100):
        centre = (low + high) / 2
        total = (1 / (1 + np.exp(-slope * (leads - centre)))).sum()
        low, high = (centre, high) if total > positives else (low, centre)
    return (low + high) / 2


def fit(rows: Sequence[Row], slope: float, *, fittable_only: bool = False) -> Calibration:
    """Both centres, each on its own kind's rows. A kind with rows of one label has no centre: an error,
    unless ``fittable_only``, which leaves such kinds (and kinds without rows) out."""
    centres = {}
    for kind in KINDS:
        mine = [r for r in rows if r.kind == kind]
        if mine and (not fittable_only or _both_labels(mine)):
            centres[kind] = fit_centre(
                np.array([r.lead for r in mine]), np.array([r.backdoored for r in mine], dtype=float), slope
            )
    return Calibration(slope=slope, centres=centres)


def _both_labels(rows: Sequence[Row]) -> bool:
    return len({r.backdoored for r in rows}) == 2


def cross_entropy(calibration: Calibration, rows: Sequence[Row]) -> float:
    return metrics.cross_entropy([calibration.probability(r) for r in rows], [int(r.backdoored) for r in rows])


def held_out_cross_entropy(rows: Sequence[Row], slope: float, group: Callable[[Row], str]) -> float | None:
    """Cross-entropy of each group's rows under centres fitted on every other group's rows.

    A group's rows of a kind are held out only where the other groups' rows of that kind hold both
    labels (a centre needs them): holding out the only build of a kind, or the only backdoored model,
    leaves nothing to fit. Those rows are left out (``not_held_out`` counts them); None if no row is left.
    """
    probabilities, labels = [], []
    for name in sorted({group(r) for r in rows}):
        held_out = [r for r in rows if group(r) == name]
        calibration = fit([r for r in rows if group(r) != name], slope, fittable_only=True)
        held_out = [r for r in held_out if r.kind in calibration.centres]
        probabilities += [calibration.probability(r) for r in held_out]
        labels += [int(r.backdoored) for r in held_out]
    return metrics.cross_entropy(probabilities, labels) if labels else None


def not_held_out(rows: Sequence[Row], group: Callable[[Row], str]) -> dict[str, int]:
    """Per kind, the rows ``held_out_cross_entropy`` cannot hold out with this grouping (whatever the
    slope): those whose kind's rows in the other groups lack a label."""
    missing: Counter[str] = Counter()
    for name in {group(r) for r in rows}:
        for kind in KINDS:
            held_out = [r for r in rows if group(r) == name and r.kind == kind]
            if held_out and not _both_labels([r for r in rows if group(r) != name and r.kind == kind]):
                missing[kind] += len(held_out)
    return dict(missing)


def _by_build(row: Row) -> str:
    return row.zoo


def _by_model(row: Row) -> str:
    return row.model


def report(rows: Sequence[Row], current: Calibration, suspicious_at: float, slopes: Sequence[float]) -> dict[str, Any]:
    """Every slope's fit and held-out cross-entropy, the current constants, and the threshold check.

    The best slope is the one with the lowest cross-entropy leaving one build out, where two or more
    builds let any row be held out; else leaving one model out; else (no row can be held out) in sample.
    """
    builds = sorted({r.zoo for r in rows})
    missing = {
        "leave_one_model_out": not_held_out(rows, _by_model),
        "leave_one_build_out": not_held_out(rows, _by_build) if len(builds) > 1 else {},
    }
    possible = {name: sum(counts.values()) < len(rows) for name, counts in missing.items()}
    if len(builds) > 1 and possible["leave_one_build_out"]:
        held_out = "leave_one_build_out"
    elif possible["leave_one_model_out"]:
        held_out = "leave_one_model_out"
    else:
        held_out = "cross_entropy"
    held_out_group = _by_build if held_out == "leave_one_build_out" else _by_model
    kinds = [kind for kind in KINDS if any(r.kind == kind for r in rows)]
    fits: list[dict[str, Any]] = []
    for slope in slopes:
        calibration = fit(rows, slope)
        fits.append(
            {
                "slope": slope,
                "centres": calibration.centres,
                "cross_entropy": cross_entropy(calibration, rows),
                "leave_one_model_out": held_out_cross_entropy(rows, slope, _by_model),
                "leave_one_build_out": held_out_cross_entropy(rows, slope, _by_build) if len(builds) > 1 else None,
                # each kind's centre is fitted on that kind's rows alone, so its held-out cross-entropy
                # is the one its rows get here: what each kind would choose if it had its own slope
                "held_out_by_kind": {
                    kind: held_out_cross_entropy([r for r in rows if r.kind == kind], slope, held_out_group)
                    for kind in kinds
                },
            }
        )
    best = min(fits, key=lambda f: f[held_out])
    by_kind = {kind: [f for f in fits if f["held_out_by_kind"][kind] is not None] for kind in kinds}
    return {
        "rows": len(rows),
        "builds": dict(Counter(r.zoo for r in rows)),
        "detector_keys": dict(Counter(r.detector_key for r in rows)),
        "per_kind": {
            kind: {
                "backdoored": sum(r.backdoored for r in rows if r.kind == kind),
                "clean": sum(not r.backdoored for r in rows if r.kind == kind),
            }
            for kind in KINDS
        },
        "fits": fits,
        "chosen_by": held_out,
        "best": best,
        "not_held_out": {name: counts for name, counts in missing.items() if counts},
        "best_slope_by_kind": {
            kind: min(mine, key=lambda f: f["held_out_by_kind"][kind])["slope"]
            for kind, mine in by_kind.items()
            if mine
        },
        "current": {
            "slope": current.slope,
            "centres": current.centres,
            "cross_entropy": cross_entropy(current, rows),
            "thresholds": threshold_check(rows, current, suspicious_at),
        },
        "best_thresholds": threshold_check(rows, Calibration(best["slope"], best["centres"]), suspicious_at),
    }


def threshold_check(rows: Sequence[Row], calibration: Calibration, suspicious_at: float) -> dict[str, Any]:
    """Per kind: the lead that reaches ``suspicious_at``, the clean rows flagged and the share of
    backdoored rows flagged, and the largest clean lead."""
    check = {}
    for kind in sorted({r.kind for r in rows} & set(calibration.centres)):
        line = calibration.threshold(kind, suspicious_at)
        clean = [r.lead for r in rows if r.kind == kind and not r.backdoored]
        backdoored = [r.lead for r in rows if r.kind == kind and r.backdoored]
        check[kind] = {
            "lead_line": line,
            "clean_flagged": sum(e >= line for e in clean),
            "clean_rows": len(clean),
            "detected": metrics.flag_rate([e >= line for e in backdoored]),
            "largest_clean": max(clean, default=float("nan")),
        }
    return check


def format_report(result: dict[str, Any]) -> str:
    kinds = ", ".join(f"{k} {v['backdoored']}/{v['clean']}" for k, v in result["per_kind"].items())
    lines = [
        f"{result['rows']} rows (backdoored/clean: {kinds}) from {len(result['builds'])} zoo build(s), "
        f"{len(result['detector_keys'])} detector key(s)",
    ]
    if result.get("repeated_rows_dropped"):
        lines.append(
            f"{result['repeated_rows_dropped']} rows dropped: their weights (sha256) repeat another build's, "
            "and would leak into leave-one-build-out"
        )
    for kind, count in result.get("rows_without_lead", {}).items():
        lines.append(f"{count} {kind} rows left out: saved without class_evidence, which their lead needs")
    for name, counts in result.get("not_held_out", {}).items():
        for kind, count in counts.items():
            unit = "builds" if name == "leave_one_build_out" else "models"
            lines.append(
                f"{name.replace('_', ' ')}: {count} {kind} rows not held out, as the other {unit}' {kind} rows "
                "do not hold both labels to fit a centre on (n/a where no row is left)"
            )
    lines += [
        "",
        "| slope | gray centre | colour centre | CE in sample | CE leave one model out | CE leave one build out "
        "| held out, gray | held out, colour |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in result["fits"]:
        by_kind = " | ".join(_number(f["held_out_by_kind"].get(kind)) for kind in KINDS)
        lines.append(
            f"| {f['slope']:g} | {_centre(f['centres'], 'gray')} | {_centre(f['centres'], 'colour')} | "
            f"{f['cross_entropy']:.3f} | {_number(f['leave_one_model_out'])} | {_number(f['leave_one_build_out'])} "
            f"| {by_kind} |"
        )
    current, best = result["current"], result["best"]
    lines += [
        "",
        f"current constants (slope {current['slope']:g}, gray {_centre(current['centres'], 'gray')}, "
        f"colour {_centre(current['centres'], 'colour')}): CE {current['cross_entropy']:.3f}",
        f"best by {CHOSEN_BY[result['chosen_by']]}: slope {best['slope']:g}, "
        f"gray {_centre(best['centres'], 'gray')}, colour {_centre(best['centres'], 'colour')}",
        "with a slope per kind (held out as above): "
        + (", ".join(f"{kind} {slope:g}" for kind, slope in result["best_slope_by_kind"].items()) or "n/a"),
        "",
        "| calibration | kind | lead line | clean flagged | detected | largest clean |",
        "|---|---|---|---|---|---|",
    ]
    for name, check in (("current", current["thresholds"]), ("best", result["best_thresholds"])):
        for kind, c in check.items():
            lines.append(
                f"| {name} | {kind} | {c['lead_line']:.2f} | {c['clean_flagged']} of {c['clean_rows']} | "
                f"{c['detected']:.2f} | {c['largest_clean']:.2f} |"
            )
    return "\n".join(lines)


def _centre(centres: dict[str, float], kind: str) -> str:
    return f"{centres[kind]:.2f}" if kind in centres else "n/a"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def drop_repeated_weights(
    rows: Sequence[Row], current_key: Callable[[int], str] | None = None
) -> tuple[list[Row], int]:
    """The rows without those that repeat another row of the same weights (sha256) and seed, and how
    many were dropped. Of the rows of a model's weights and seed, the one kept is the first computed by
    the current detection code (its detector key is ``current_key(seed)``, the key ``bench.runs`` gives
    the agnostic detector today), else the first that keeps every class's evidence, else the first.

    A build on the same kind of machine can be bit-identical to an earlier one (BENCHMARKS.md, "The
    zoo"); its rows counted as a new build would let leave-one-build-out fit on the very models it
    holds out, whichever scorer computed them. Evidence alone cannot tell: models at the margin cap
    share it exactly. The current code's rows are what the scorer gives now, so which file is listed
    first (a glob lists the oldest first) and whether the zoo's fresh rows come after the saved ones
    do not decide; the rows with every class's evidence are the ones a gray lead can be read from. The
    zoo's fresh rows and the same zoo's saved rows count once too. Rows without a sha256 are kept.
    """

    def rank(row: Row) -> tuple[bool, bool]:
        current = current_key is not None and row.detector_key == current_key(row.seed)
        return current, row.class_evidence is not None

    chosen: dict[tuple[str, int], int] = {}  # per weights and seed, the index of the row to keep
    for index, row in enumerate(rows):
        if row.sha256 is None:
            continue
        first = chosen.setdefault((row.sha256, row.seed), index)
        if rank(row) > rank(rows[first]):
            chosen[(row.sha256, row.seed)] = index
    keep = set(chosen.values())
    kept = [r for i, r in enumerate(rows) if r.sha256 is None or i in keep]
    return kept, len(rows) - len(kept)


def current_detector_key(seed: int) -> str:
    """The key the current detection code gives the agnostic detector's rows of ``seed`` (default settings,
    on the CPU, as ``zoo_rows`` computes them)."""
    from bench.runs import detector_key
    from worker.detectors.base import get_detector

    return detector_key(get_detector("agnostic"), seed)


def read_rows(path: Path) -> list[Row]:
    """Rows saved by ``--save``; raises ValueError naming the line of a malformed one."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
            if fields.get("class_evidence") is not None:
                fields["class_evidence"] = tuple(float(e) for e in fields["class_evidence"])
            row = Row(**fields)
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"{path}:{number}: not a calibration row ({exc})") from exc
        if row.kind not in KINDS or not math.isfinite(row.evidence):
            raise ValueError(f"{path}:{number}: kind must be one of {KINDS} and evidence a finite number")
        if row.class_evidence is not None:
            if not all(math.isfinite(e) for e in row.class_evidence):
                raise ValueError(f"{path}:{number}: class_evidence must be finite numbers")
            if max(row.class_evidence, default=math.nan) != row.evidence:
                raise ValueError(f"{path}:{number}: evidence must be the largest of class_evidence")
        rows.append(row)
    return rows


def zoo_rows(zoo: Path, split: str, seeds: Sequence[int], threads: int | None) -> list[Row]:
    """The agnostic detector's rows of the zoo's models, from its benchmark cache or computed."""
    import torch

    from bench.runs import run_detectors
    from worker.detectors.base import get_detector
    from worker.zoo.build import read_manifest
    from worker.zoo.provenance import build_hash

    if threads:
        torch.set_num_threads(threads)
    models = read_manifest(zoo)["models"]
    entries = [m for m in models if split in ("all", m["split"])]
    if not entries:
        raise ValueError(f"no models in {zoo} for split {split!r}")
    build = build_hash(models)
    shapes = {m["id"]: m["input_shape"] for m in entries}
    cache = zoo / "bench-results.jsonl"
    rows = []
    for seed in seeds:
        for r in run_detectors(zoo, entries, [get_detector("agnostic")], clean_images=0, cache=cache, seed=seed):
            rows.append(
                Row(
                    zoo=build,
                    model=r["model"],
                    seed=seed,
                    kind=input_kind(shapes[r["model"]]),
                    backdoored=bool(r["backdoored"]),
                    evidence=max(r["class_scores"]),
                    detector_key=r["detector_key"],
                    sha256=r["sha256"],
                    class_evidence=tuple(r["class_scores"]),
                )
            )
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.calibrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", type=Path, help="zoo folder whose benchmark rows to use (computed where missing)")
    parser.add_argument("--split", choices=("dev", "test", "all"), default="dev")
    parser.add_argument("--seeds", default="0,1,2", help="saliency seeds of the zoo's rows, comma-separated")
    parser.add_argument("--rows", type=Path, nargs="*", default=[], help="saved rows files to pool with the zoo's")
    parser.add_argument("--save", type=Path, help="write the zoo's rows here (JSON lines), for later pooling")
    parser.add_argument("--slopes", default=",".join(f"{s:g}" for s in SLOPES), help="slopes to fit, comma-separated")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads for rows still to compute")
    parser.add_argument("--json", type=Path, help="also write the report here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from worker.scoring.config import ScoringConfig

    args = parse_args(argv)
    try:
        slopes = [float(s) for s in args.slopes.split(",")]
        seeds = [int(s) for s in args.seeds.split(",")]
        if not all(s > 0 for s in slopes):
            raise ValueError("slopes must be positive")
        if args.threads is not None and args.threads < 1:
            raise ValueError("--threads must be at least 1")
        if args.zoo is not None and not (args.zoo / "manifest.json").is_file():
            raise ValueError(f"{args.zoo / 'manifest.json'} not found; build it with `backdoor-audit zoo build`")
        if args.json:
            check_writable(args.json)
        rows = [row for path in args.rows for row in read_rows(path)]
        if args.save:  # its folder is created only once every input has been checked
            args.save.parent.mkdir(parents=True, exist_ok=True)
            check_writable(args.save)
        if args.zoo is not None:
            mine = zoo_rows(args.zoo, args.split, seeds, args.threads)
            if args.save:
                write_text_atomically(args.save, "".join(json.dumps(r.__dict__) + "\n" for r in mine))
            rows += mine
        if not rows:
            raise ValueError("no rows: give --zoo, --rows or both")
        rows, repeated = drop_repeated_weights(rows, cache(current_detector_key))
        without_lead = Counter(r.kind for r in rows if not r.has_lead)
        rows = [r for r in rows if r.has_lead]
        if not rows:
            raise ValueError("no rows with a lead: rows of a kind whose lead counts rivals need class_evidence")
        current = Calibration(LEAD_SLOPE, dict(LEAD_CENTRES))
        result = {
            **report(rows, current, ScoringConfig().suspicious_at, slopes),
            "repeated_rows_dropped": repeated,
            "rows_without_lead": dict(without_lead),
        }
        if args.json:
            write_text_atomically(args.json, json.dumps(result, indent=1) + "\n")
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
