"""The benchmark's grouping, metrics and tables over result rows (detectors themselves are tested elsewhere)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.summary import compare, compare_times, summarise
from bench.tables import format_comparison, format_table, format_times


def _row(model: str, family: str, probability: float, verdict: str, top: int, targets: list[int]) -> dict[str, Any]:
    return {
        "model": model,
        "detector": "d",
        "family": family,
        "part": "gray",
        "backdoored": family != "clean",
        "target_classes": targets,
        "probability": probability,
        "verdict": verdict,
        "suspected_classes": [top, (top + 1) % 10],
        "seconds": 2.0,
        "arch": "small_cnn",
    }


ROWS = [
    _row("c1", "clean", 0.1, "clean", 0, []),
    _row("c2", "clean", 0.6, "suspicious", 1, []),
    _row("b1", "badnets", 0.9, "backdoored", 3, [3]),
    _row("b2", "badnets", 0.5, "clean", 4, [4]),
    _row("w1", "wanet", 0.05, "clean", 2, [7]),
]


def test_groups_pair_each_family_with_all_clean_models() -> None:
    summary = {s["group"]: s for s in summarise(ROWS)}
    assert set(summary) == {"overall", "gray", "badnets", "wanet"}
    badnets, overall = summary["badnets"], summary["overall"]
    assert (badnets["backdoored"], badnets["clean"]) == (2, 2)
    # badnets 0.9, 0.5 vs clean 0.1, 0.6: 0.9 beats both, 0.5 beats one -> 3/4
    assert badnets["auroc"] == pytest.approx(0.75)
    assert badnets["detected"] == 0.5 and badnets["target_top1"] == 1.0
    assert overall["clean_fpr"] == 0.5
    low, high = overall["clean_fpr_interval"]
    assert 0 < low < 0.5 < high < 1
    assert summary["wanet"]["auroc"] == 0.0 and summary["wanet"]["target_top1"] != summary["wanet"]["target_top1"]
    assert overall["median_seconds"] == 2.0


def test_patches_get_a_group_per_part_against_that_parts_clean_models() -> None:
    rgb = [
        {**_row("rc", "clean", 0.95, "backdoored", 5, []), "part": "rgb"},
        {**_row("rb", "badnets", 0.97, "backdoored", 6, [6]), "part": "rgb"},
    ]
    summary = {s["group"]: s for s in summarise(ROWS + rgb)}
    assert {"gray badnets", "rgb badnets"} <= set(summary) and "gray wanet" not in summary
    gray, colour = summary["gray badnets"], summary["rgb badnets"]
    assert (gray["backdoored"], gray["clean"], colour["backdoored"], colour["clean"]) == (2, 2, 1, 1)
    assert gray["auroc"] == pytest.approx(0.75) and colour["auroc"] == 1.0
    # across parts the gray patch at 0.5 ranks under the rgb clean model at 0.95: lower than either part
    assert summary["badnets"]["auroc"] < gray["auroc"]
    assert "gray badnets" not in {s["group"] for s in summarise(ROWS)}, "one part: no per-part groups"
    assert "| d | gray badnets | 2/2 | 0.750 (" in format_table(list(summary.values()))


def test_table_has_a_row_per_group_and_prints_missing_values() -> None:
    table = format_table(summarise(ROWS))
    lines = table.splitlines()
    assert len(lines) == 2 + 4
    assert "| d | wanet | 1/2 | 0.000 (0.00-0.00) |" in table and "n/a" in table
    assert "| 0.50 (0.09-0.91) |" in table  # one of the two clean models flagged, with its interval


def test_our_detector_is_compared_with_each_baseline_on_the_same_models() -> None:
    ours = [{**r, "detector": "agnostic", "seconds": 1.0} for r in ROWS]
    # the baseline swaps the scores of b2 and c2 (a worse ranking), is slower on all but one model,
    # and did not run on w1 (so w1 is left out of the comparison)
    swapped = {"b2": 0.6, "c2": 0.5}
    baseline = [
        {
            **r,
            "detector": "mmbd",
            "probability": swapped.get(r["model"], r["probability"]),
            "seconds": 1.0 if r["model"] == "c1" else 4.0,
        }
        for r in ROWS
        if r["model"] != "w1"
    ]
    (overall, gray) = compare(ours + baseline)
    assert (overall["other"], overall["group"], overall["models"]) == ("mmbd", "overall", 4)
    assert gray["group"] == "gray" and gray["models"] == 4
    # ours: b1, b2 (0.9, 0.5) vs c1, c2 (0.1, 0.6) -> 3/4; the baseline: (0.9, 0.6) vs (0.1, 0.5) -> 4/4
    assert overall["auroc_difference"] == pytest.approx(-0.25)
    assert overall["median_time_ratio"] == pytest.approx(0.25) and overall["faster_on"] == 3
    assert overall["seconds"] == (4.0, 13.0)
    assert "| mmbd | overall | 4 | -0.25 (" in format_comparison([overall])
    assert format_comparison([overall]).endswith("| 0.25 | 3 of 4 | 4 / 13 |")


def test_the_figures_do_not_depend_on_the_order_of_the_rows() -> None:
    """Two builders sharing a zoo record its models in the order they finish, and the bootstrap draws
    models by position: the same scores gave paired intervals apart at the second decimal."""
    rows = []
    for detector in ("agnostic", "mmbd"):
        for i in range(30):
            backdoored = i % 3 != 0
            score = (i * 37 % 101) / 101  # scattered over [0, 1]; the baseline ranks the other way
            score = score if detector == "agnostic" else 1 - score
            verdict = "backdoored" if score > 0.5 else "clean"  # flags on both sides: no NaN figure (NaN != NaN)
            row = _row(f"m{i:02d}", "badnets" if backdoored else "clean", score, verdict, 1, [1] if backdoored else [])
            rows.append({**row, "detector": detector})
    shuffled = rows[::-1][1::2] + rows[::-1][::2]
    assert summarise(shuffled) == summarise(rows)
    assert compare(shuffled) == compare(rows)
    assert compare_times(shuffled) == compare_times(rows)


def test_a_run_of_the_baselines_alone_has_nothing_to_compare() -> None:
    """``--detectors neural-cleanse`` alone ran every model and then failed on an empty median."""
    baseline = [{**r, "detector": "neural-cleanse"} for r in ROWS]
    assert compare(baseline) == [] and compare_times(baseline) == []


def test_times_are_compared_per_part_and_architecture() -> None:
    """The time target is won or lost per architecture: a small net where the baseline is faster must
    show up even when the median over all models is under 1."""
    archs = {"c1": "lenet5", "b1": "lenet5"}
    ours = [{**r, "detector": "agnostic", "arch": archs.get(r["model"], r["arch"])} for r in ROWS]
    # the baseline takes 1 s on the small_cnns (ours 2 s) and 8 s on the lenet5s; it skipped w1
    baseline = [
        {**r, "detector": "mmbd", "seconds": 8.0 if r["arch"] == "lenet5" else 1.0} for r in ours if r["model"] != "w1"
    ]
    (lenet5, small_cnn) = compare_times(ours + baseline)
    assert (lenet5["part"], lenet5["arch"], lenet5["models"]) == ("gray", "lenet5", 2)
    assert (lenet5["median_time_ratio"], lenet5["faster_on"], lenet5["seconds"]) == (0.25, 2, (4.0, 16.0))
    assert (small_cnn["arch"], small_cnn["models"], small_cnn["median_time_ratio"]) == ("small_cnn", 2, 2.0)
    assert small_cnn["faster_on"] == 0
    assert "| mmbd | gray | small_cnn | 2 | 2.00 | 0 of 2 | 4 / 2 |" in format_times([lenet5, small_cnn])
