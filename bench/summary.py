"""The benchmark's figures over result rows: metrics per detector and group, and our detector
against each baseline on the same models (AUROC difference and time)."""

from __future__ import annotations

import statistics
from typing import Any

from worker.zoo import metrics

REFERENCE = "agnostic"  # our detector: the one every baseline is compared with
# families that also get a group per part: the targets name a patch AUROC on each part
PER_PART_FAMILIES = ("badnets",)


def _in_model_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows in model-id order. The bootstrap intervals draw models by position, so without a fixed order
    the same scores gave other intervals whenever the manifest listed the models otherwise (two builders
    sharing a folder record them in the order they finish)."""
    return sorted(rows, key=lambda r: r["model"])


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metrics per detector and group; a family's group pairs its backdoored models with every clean one,
    and a part's family group (``gray badnets``) the part's backdoored models with the part's clean ones.
    The figures depend on the rows, not on their order."""
    summary = []
    for detector in sorted({r["detector"] for r in rows}):
        mine = _in_model_order([r for r in rows if r["detector"] == detector])
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
    ran, in model-id order (``_in_model_order``); a detector that shares no model with the reference (a run of
    the baselines alone) has nothing to be compared on and is left out."""
    by_detector: dict[str, Rows] = {}
    for row in _in_model_order(rows):
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
