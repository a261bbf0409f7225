"""The benchmark's grouping and metrics over result rows (detectors themselves are tested elsewhere)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from bench.detection import (
    compare,
    compare_times,
    format_comparison,
    format_table,
    format_times,
    median_rows,
    summarise,
)


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


def test_cache_key_follows_the_code_a_detector_imports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A cached result must not outlive the code that produced it (a calibration constant lives in
    code, not in the detector's settings), and a change elsewhere must not invalidate it."""
    from bench import detection

    files = {
        "worker/detectors/fake.py": "def run():\n    from worker.scoring import rule\n",
        "worker/scoring/rule.py": "from worker.scoring.constants import X\n",
        "worker/scoring/constants.py": "X = 1\n",
        "worker/scoring/other.py": "Y = 1\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(detection, "REPO", tmp_path)

    def version_after(name: str, text: str) -> str:
        (tmp_path / name).write_text(text)
        detection.code_version.cache_clear()
        return detection.code_version("worker.detectors.fake")

    first = version_after("worker/scoring/other.py", "Y = 1\n")
    assert version_after("worker/scoring/other.py", "Y = 2\n") == first, "code it does not import"
    assert version_after("worker/scoring/constants.py", "X = 2\n") != first, "a lazy, transitive import"
    (tmp_path / "worker/loading").mkdir()
    (tmp_path / "worker/loading/loader.py").write_text("LAYOUT = 'nchw'\n")
    detection.code_version.cache_clear()
    with_loader = detection.code_version("worker.detectors.fake", detection.LOADER)
    (tmp_path / "worker/loading/loader.py").write_text("LAYOUT = 'nhwc'\n")
    detection.code_version.cache_clear()
    assert detection.code_version("worker.detectors.fake", detection.LOADER) != with_loader, "the loader keys too"
    detection.code_version.cache_clear()


def test_cache_key_tells_seeds_and_devices_apart_and_keeps_the_old_keys() -> None:
    """``--seed`` and ``--device`` reruns must not be served another run's cached results (CUDA draws
    other random numbers and times differently), and results cached before seeds and devices were
    keyed (all seed 0 on the CPU) must stay valid."""
    from bench.detection import detector_key
    from worker.detectors.base import get_detector

    detector = get_detector("agnostic")
    keys = {(seed, device): detector_key(detector, seed, device) for seed in (0, 1) for device in ("cpu", "cuda")}
    assert len(set(keys.values())) == 4
    assert keys[0, "cpu"] == detector_key(detector) and "+" not in keys[0, "cpu"].split(")")[-1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_is_refused_before_any_work(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from bench.detection import main

    assert main(["--device", "cuda", "--zoo", str(tmp_path)]) == 2
    assert "no CUDA device is available" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_bad_options_are_refused_before_any_work(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from bench.detection import main

    assert main(["--threads", "0", "--zoo", str(tmp_path)]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err
    assert main(["--quick", "--zoo", str(tmp_path), "--json", str(tmp_path / "missing" / "bench.json")]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert main(["--seeds", "2", "--zoo", str(tmp_path)]) == 2
    assert "--seeds 2: use an odd number" in capsys.readouterr().err
    assert main(["--quick", "--zoo", str(tmp_path), "--detectors", "agnostic,strip"]) == 2
    assert "unknown detectors ['strip']" in capsys.readouterr().err
    assert main(["--quick", "--zoo", str(tmp_path), "--config", '{"saliency": {"iteration": 5}}']) == 2
    assert "unknown saliency config keys: iteration" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [], "the quick zoo must not be built for a run that is refused"


def _seeded(run: list[dict[str, Any]], seed: int, probabilities: list[float]) -> list[dict[str, Any]]:
    return [
        {**row, "probability": p, "seconds": 1.0 + seed, "detector_key": f"d+seed={seed}"}
        for row, p in zip(run, probabilities, strict=True)
    ]


def test_median_rows_keep_each_models_median_run_timed_as_all_runs() -> None:
    rows = ROWS[:2]
    runs = [_seeded(rows, 0, [0.9, 0.2]), _seeded(rows, 1, [0.1, 0.3]), _seeded(rows, 2, [0.5, 0.4])]
    runs[2][0]["verdict"] = "suspicious"  # the median run brings its own verdict and classes
    first, second = median_rows(runs)
    assert (first["probability"], first["verdict"], first["detector_key"]) == (0.5, "suspicious", "d+seed=2")
    assert (second["probability"], second["detector_key"]) == (0.3, "d+seed=1")
    assert first["seconds"] == second["seconds"] == 1.0 + 2.0 + 3.0
    assert first["seeds"] == ["d+seed=0", "d+seed=1", "d+seed=2"]


def test_median_rows_refuse_runs_that_list_different_models() -> None:
    with pytest.raises(ValueError, match="same models"):
        median_rows([ROWS[:2], ROWS[1:3], ROWS[:2]])
