"""The benchmark's result cache: its keys follow the detection code, seeds and devices; and the
median run over seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import runs
from bench.runs import detector_key, median_rows
from worker.detectors.base import get_detector


def test_cache_key_follows_the_code_a_detector_imports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A cached result must not outlive the code that produced it (a calibration constant lives in
    code, not in the detector's settings), and a change elsewhere must not invalidate it."""
    files = {
        "worker/detectors/fake.py": "def run():\n    from worker.scoring import rule\n",
        "worker/scoring/rule.py": "from worker.scoring.constants import X\n",
        "worker/scoring/constants.py": "X = 1\n",
        "worker/scoring/other.py": "Y = 1\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(runs, "REPO", tmp_path)

    def version_after(name: str, text: str) -> str:
        (tmp_path / name).write_text(text)
        runs.code_version.cache_clear()
        return runs.code_version("worker.detectors.fake")

    first = version_after("worker/scoring/other.py", "Y = 1\n")
    assert version_after("worker/scoring/other.py", "Y = 2\n") == first, "code it does not import"
    assert version_after("worker/scoring/constants.py", "X = 2\n") != first, "a lazy, transitive import"
    (tmp_path / "worker/loading").mkdir()
    (tmp_path / "worker/loading/loader.py").write_text("LAYOUT = 'nchw'\n")
    runs.code_version.cache_clear()
    with_loader = runs.code_version("worker.detectors.fake", runs.LOADER)
    (tmp_path / "worker/loading/loader.py").write_text("LAYOUT = 'nhwc'\n")
    runs.code_version.cache_clear()
    assert runs.code_version("worker.detectors.fake", runs.LOADER) != with_loader, "the loader keys too"
    runs.code_version.cache_clear()


def test_cache_key_tells_seeds_and_devices_apart_and_keeps_the_old_keys() -> None:
    """``--seed`` and ``--device`` reruns must not be served another run's cached results (CUDA draws
    other random numbers and times differently), and results cached before seeds and devices were
    keyed (all seed 0 on the CPU) must stay valid."""
    detector = get_detector("agnostic")
    keys = {(seed, device): detector_key(detector, seed, device) for seed in (0, 1) for device in ("cpu", "cuda")}
    assert len(set(keys.values())) == 4
    assert keys[0, "cpu"] == detector_key(detector) and "+" not in keys[0, "cpu"].split(")")[-1]


# one detector's rows of three models, as run_detectors returns them (the fields median_rows reads)
ROWS = [{"model": m, "detector": "d", "verdict": "clean", "probability": 0.0, "seconds": 0.0} for m in ("a", "b", "c")]


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
