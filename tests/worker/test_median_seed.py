"""The run at the median probability carries the verdict most seeds agree with."""

from __future__ import annotations

from typing import Any

import pytest

from worker.median_seed import combine_seed_reports, median_run, verdicts_split


def test_the_median_run_is_the_middle_probability_whatever_the_order() -> None:
    assert median_run([0.9, 0.1, 0.5]) == 2
    assert median_run([0.2, 0.95, 0.97]) == 1
    assert median_run([0.4]) == 0
    assert median_run([0.3, 0.7, 0.3]) == 2  # tied: the later of the two lower runs sits in the middle


def test_an_even_number_of_runs_has_no_median_run() -> None:
    with pytest.raises(ValueError, match="odd number of seeds"):
        median_run([0.2, 0.8])
    with pytest.raises(ValueError, match="odd number of seeds"):
        median_run([])


def test_seeds_split_only_across_the_clean_line() -> None:
    assert verdicts_split(["clean", "backdoored", "backdoored"])
    assert not verdicts_split(["suspicious", "backdoored", "backdoored"])
    assert not verdicts_split(["clean", "clean", "clean"])


def _report(seed: int, verdict: str, probability: float, seconds: float) -> dict[str, Any]:
    """The keys of a report.json that combining reads or moves, in build_report's order."""
    return {
        "verdict": verdict,
        "probability": probability,
        "borderline": False,
        "suspected_classes": [] if verdict == "clean" else [3],
        "classes": [{"class_index": 3, "score": probability}],
        "config": {"saliency": {"seed": seed}, "scoring": {"suspicious_at": 0.85}},
        "seconds": seconds,
        "created_at": f"run {seed}",
    }


def test_several_seeds_report_the_median_run_with_every_runs_verdict() -> None:
    runs = [
        _report(4, "backdoored", 0.97, 10.0),
        _report(5, "clean", 0.40, 11.5),
        _report(6, "suspicious", 0.88, 12.25),
    ]
    combined = combine_seed_reports(runs)
    median = runs[2]
    assert {k: v for k, v in combined.items() if k not in {"seeds", "seconds", "borderline"}} == {
        k: v for k, v in median.items() if k not in {"seconds", "borderline"}
    }  # the median run's maps, scores, suspects and config, as that run reported them
    assert combined["seeds"] == [
        {"seed": 4, "verdict": "backdoored", "probability": 0.97},
        {"seed": 5, "verdict": "clean", "probability": 0.40},
        {"seed": 6, "verdict": "suspicious", "probability": 0.88},
    ]
    assert combined["seconds"] == 33.75  # what the verdict cost: every run
    assert combined["borderline"] is True  # one seed calls it clean, two flag it
    assert list(combined).index("seeds") == list(combined).index("borderline") + 1
    assert runs[2]["seconds"] == 12.25 and "seeds" not in runs[2], "the runs' reports are left as they were"


def test_seeds_that_agree_are_not_borderline_even_near_the_threshold() -> None:
    runs = [
        _report(0, "suspicious", 0.86, 1.0),
        _report(1, "suspicious", 0.87, 1.0),
        _report(2, "backdoored", 0.99, 1.0),
    ]
    for run in runs:
        run["borderline"] = True  # each run alone sits within one seed's spread of the line
    combined = combine_seed_reports(runs)
    assert combined["borderline"] is False and combined["probability"] == 0.87
    assert combined["config"]["saliency"]["seed"] == 1


def test_one_seed_reports_its_run_unchanged() -> None:
    run = {**_report(0, "suspicious", 0.86, 2.5), "borderline": True}
    assert combine_seed_reports([run]) == run  # no "seeds" key: the same report.json as before --seeds


def test_an_even_number_of_reports_is_refused() -> None:
    with pytest.raises(ValueError, match="odd number of seeds"):
        combine_seed_reports([_report(0, "clean", 0.1, 1.0), _report(1, "clean", 0.2, 1.0)])
