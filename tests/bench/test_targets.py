"""The issue's targets, judged on a benchmark summary: per group, the patch group, MM-BD, missing values."""

from __future__ import annotations

from typing import Any

from bench.tables import format_targets
from bench.targets import check_targets


def _group(group: str, **metrics: float) -> dict[str, Any]:
    defaults = {"auroc": 0.99, "clean_fpr": 0.0, "target_top1": 1.0, "cross_entropy": 0.1}
    return {"detector": "agnostic", "group": group, **defaults, **metrics}


SUMMARY = [
    _group("overall"),
    _group("gray"),
    _group("rgb", clean_fpr=2 / 33),
    _group("badnets", auroc=0.985),
    _group("gray badnets", auroc=1.0),
    _group("rgb badnets", auroc=0.97),
    {**_group("overall", auroc=0.6), "detector": "mmbd"},  # another detector's rows are not judged
]


def _comparison(group: str, difference: float, ratio: float) -> dict[str, Any]:
    return {"reference": "agnostic", "other": "mmbd", "group": group, "auroc_difference": difference,
            "median_time_ratio": ratio}  # fmt: skip


def _verdicts(results: list[dict[str, Any]]) -> dict[tuple[str, str], bool | None]:
    return {(r["target"], r["group"]): r["met"] for r in results}


def test_each_target_is_judged_overall_and_per_part() -> None:
    comparisons = [_comparison("overall", 0.3, 0.8), _comparison("gray", 0.4, 1.1), _comparison("rgb", -0.01, 0.7)]
    verdicts = _verdicts(check_targets(SUMMARY, comparisons, "agnostic"))
    assert len(verdicts) == 7 * 3
    assert verdicts[("clean FPR <= 5%", "rgb")] is False and verdicts[("clean FPR <= 5%", "overall")] is True
    # the patch target reads each part's patch group, not the part's whole group
    assert verdicts[("patch AUROC >= 0.98", "overall")] is True
    assert verdicts[("patch AUROC >= 0.98", "rgb")] is False and verdicts[("AUROC >= 0.95", "rgb")] is True
    assert verdicts[("AUROC ahead of MM-BD", "rgb")] is False
    assert verdicts[("median time ratio to MM-BD <= 1", "gray")] is False
    table = format_targets(check_targets(SUMMARY, comparisons, "agnostic"))
    assert "| clean FPR <= 5% | 0.000 met | 0.000 met | 0.061 **missed** |" in table


def test_without_mm_bd_or_a_second_part_those_rows_and_columns_are_left_out() -> None:
    one_part = [_group("overall"), _group("rgb"), _group("badnets", auroc=0.97)]
    results = check_targets(one_part, [], "agnostic")
    assert {r["group"] for r in results} == {"overall"}
    assert {r["target"] for r in results} == {
        "AUROC >= 0.95", "patch AUROC >= 0.98", "clean FPR <= 5%", "target top-1 >= 90% (detected)",
        "cross-entropy <= 0.30",
    }  # fmt: skip
    assert _verdicts(results)[("patch AUROC >= 0.98", "overall")] is False
    assert check_targets(one_part, [], "mmbd") == []


def test_a_value_that_cannot_be_computed_is_neither_met_nor_missed() -> None:
    nothing_detected = [_group("overall", target_top1=float("nan"))]
    (top1,) = [r for r in check_targets(nothing_detected, [], "agnostic") if r["target"].startswith("target")]
    assert top1["met"] is None
    assert "| target top-1 >= 90% (detected) | n/a |" in format_targets([top1])
