"""The issue's targets for our detector, judged on a benchmark run's summary (issue #3, "Done when").

Each target is judged overall and on each part (gray, rgb) separately, because the issue asks for
both: a score tuned on small grayscale nets can collapse on rgb torchvision nets. The patch target
reads the part's patch group (``gray badnets``); the two targets against MM-BD read the paired
comparison of the same run (``bench.summary.compare``), and are left out when MM-BD did not run.
A value that cannot be computed (no backdoored model detected, say) is neither met nor missed.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

BASELINE = "mmbd"  # the speed and AUROC comparison is against MM-BD
PATCH_FAMILY = "badnets"
_COMPARE: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, ">": operator.gt, "<=": operator.le}


@dataclass(frozen=True)
class Target:
    """``metric`` of the group's summary row (``source`` "group"), of its patch group ("patches") or of
    its comparison with MM-BD ("mmbd"), held to ``op bound``."""

    label: str
    source: str
    metric: str
    op: str
    bound: float

    def met(self, value: float) -> bool | None:
        return None if value != value else _COMPARE[self.op](value, self.bound)


TARGETS = (
    Target("AUROC >= 0.95", "group", "auroc", ">=", 0.95),
    Target("patch AUROC >= 0.98", "patches", "auroc", ">=", 0.98),
    Target("clean FPR <= 5%", "group", "clean_fpr", "<=", 0.05),
    Target("target top-1 >= 90% (detected)", "group", "target_top1", ">=", 0.90),
    Target("cross-entropy <= 0.30", "group", "cross_entropy", "<=", 0.30),
    Target("AUROC ahead of MM-BD", BASELINE, "auroc_difference", ">", 0.0),
    Target("median time ratio to MM-BD <= 1", BASELINE, "median_time_ratio", "<=", 1.0),
)


def check_targets(
    summary: list[dict[str, Any]], comparisons: list[dict[str, Any]], detector: str
) -> list[dict[str, Any]]:
    """One row per target and group (overall, then each part when the run has two) with the value and
    whether it is met."""
    groups = {s["group"]: s for s in summary if s["detector"] == detector}
    parts = sorted(g for g in groups if g in ("gray", "rgb"))
    columns = ["overall", *parts] if len(parts) > 1 else ["overall"]  # one part: its figures are the overall ones
    against = {c["group"]: c for c in comparisons if c["reference"] == detector and c["other"] == BASELINE}
    results = []
    for target in TARGETS:
        if target.source == BASELINE and not against:
            continue
        for group in columns:
            row = _source(target.source, group, groups, against)
            if row is None:
                continue
            value = float(row[target.metric])
            results.append({"target": target.label, "group": group, "value": value, "met": target.met(value)})
    return results


def _source(
    source: str, group: str, groups: dict[str, dict[str, Any]], against: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    if source == BASELINE:
        return against.get(group)
    if source == "patches":
        return groups.get(PATCH_FAMILY if group == "overall" else f"{group} {PATCH_FAMILY}")
    return groups.get(group)
