"""The benchmark's result cache: its keys follow the detection code, seeds and devices; and the
median run over seeds."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from bench import runs
from bench.runs import CacheError, detector_key, median_rows, read_cache, run_detectors
from worker.detectors.base import Detection, get_detector
from worker.zoo import data


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


def test_a_detector_that_takes_clean_images_is_keyed_by_their_number_and_the_data_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--clean-images 100`` must not be served results computed with 30, nor results of images the data
    code chose otherwise; the data-free detectors keep their keys (and their cached results)."""
    cleanse, agnostic = get_detector("neural-cleanse"), get_detector("agnostic")
    assert detector_key(cleanse, clean_images=30) != detector_key(cleanse, clean_images=100)
    assert "+clean_images=30@" in detector_key(cleanse, clean_images=30)
    with pytest.raises(ValueError, match="takes clean images"):
        detector_key(cleanse)
    assert detector_key(agnostic, clean_images=100) == detector_key(agnostic) == detector_key(agnostic, 0, "cpu", 30)
    hashed: list[tuple[str, ...]] = []

    def recording_version(*modules: str) -> str:
        hashed.append(modules)
        return "v"

    monkeypatch.setattr(runs, "code_version", recording_version)
    detector_key(cleanse, clean_images=30)
    detector_key(agnostic, clean_images=30)
    assert runs.DATA in hashed[0] and runs.DATA not in hashed[1]


def test_clean_images_are_class_balanced_or_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    labels = torch.arange(100) % 10
    images = labels.float().reshape(-1, 1, 1, 1).expand(-1, 1, 2, 2)
    monkeypatch.setattr(data, "load_dataset", lambda name: data.DataSet(train=(images, labels), test=(images, labels)))
    chosen = data.balanced_test_images("fashion_mnist", 30)
    assert chosen[:, 0, 0, 0].tolist() == [float(k) for k in range(10) for _ in range(3)]
    for count in (25, 5, 0):  # 25 gave 20 images, 5 gave five classes' images
        with pytest.raises(ValueError, match="positive multiple of 10"):
            data.balanced_test_images("fashion_mnist", count)
    with pytest.raises(ValueError, match="fewer than 11 images"):
        data.balanced_test_images("fashion_mnist", 110)


def test_the_benchmark_refuses_clean_images_it_cannot_balance(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from bench.detection import main

    assert main(["--zoo", str(tmp_path), "--clean-images", "25"]) == 2
    assert "--clean-images 25: neural-cleanse gets as many images of each of the 10 classes" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@dataclass
class _Counting:
    """A detector that counts its runs and takes a second."""

    name: ClassVar[str] = "counting"
    requires_clean_images: ClassVar[bool] = False
    runs: int = field(default=0, repr=False)  # not a setting: the cache key must not follow it

    def detect(self, model: Any, input_shape: Any, num_classes: int, **options: Any) -> Detection:
        self.runs += 1
        return Detection("counting", 0.5, "clean", [0], [0.0] * num_classes, seconds=1.0)


ENTRY = {"id": "m", "sha256": "s" * 64, "input_shape": [1, 4, 4], "num_classes": 2, "dataset": "fashion_mnist",
         "backdoored": False, "target_classes": [], "split": "test", "family": "clean", "part": "gray",
         "arch": "lenet5"}  # fmt: skip


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> _Counting:
    monkeypatch.setattr(runs, "load_model", lambda zoo, entry, device="cpu": torch.nn.Identity())
    monkeypatch.setattr(runs, "_progress", lambda entries: entries)
    monkeypatch.setattr(runs, "code_version", lambda *modules: "v")
    return _Counting()


def _run(detector: _Counting, cache: Path) -> list[dict[str, Any]]:
    return run_detectors(Path("zoo"), [ENTRY], [detector], clean_images=30, cache=cache)  # type: ignore[list-item]


def test_cached_results_are_reused_only_on_the_machine_and_thread_count_that_timed_them(
    counting: _Counting, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cache = tmp_path / "bench-results.jsonl"
    [row] = _run(counting, cache)
    assert row["machine"]["threads"] == torch.get_num_threads() and row["machine"]["cpu"]
    assert read_cache(cache)[0]["machine"] == row["machine"]
    _run(counting, cache)
    assert counting.runs == 1, "same machine, same threads: the cached row"

    threads = torch.get_num_threads()
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads + 1)
    _run(counting, cache)
    assert counting.runs == 2, "another thread count times otherwise"
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    other_cpu = {**row["machine"], "cpu": "Another CPU"}
    monkeypatch.setattr(runs, "this_machine", lambda: dict(other_cpu))
    _run(counting, cache)
    assert counting.runs == 3, "another machine times otherwise"

    unstamped = tmp_path / "old.jsonl"  # rows cached before rows recorded their machine
    unstamped.write_text(json.dumps({k: v for k, v in row.items() if k != "machine"}) + "\n")
    _run(counting, unstamped)
    assert counting.runs == 4


def test_a_cache_whose_last_append_was_cut_short_loses_that_row_only(
    counting: _Counting, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cache = tmp_path / "bench-results.jsonl"
    _run(counting, cache)
    whole = cache.read_bytes()
    cache.write_bytes(whole + whole[: len(whole) // 2])  # a second row killed halfway through its write
    assert len(read_cache(cache)) == 1
    assert "bench-results.jsonl:2: skipping the incomplete last line" in capsys.readouterr().err
    assert cache.read_bytes() == whole, "cut, so the next row starts its own line"

    cache.write_bytes(whole[:-1])  # a row that lost only its newline
    assert len(read_cache(cache)) == 1 and cache.read_bytes() == whole
    cache.write_bytes(whole[: len(whole) // 2])
    [row] = _run(counting, cache)
    assert counting.runs == 2 and [r["model"] for r in read_cache(cache)] == [row["model"]]
    assert len(cache.read_text().splitlines()) == 1


def test_a_damaged_line_before_the_last_is_an_error_naming_it(
    counting: _Counting, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cache = tmp_path / "bench-results.jsonl"
    _run(counting, cache)
    whole = cache.read_bytes()
    for damage in (whole[:20] + b"\n", b"[1, 2]\n"):
        cache.write_bytes(whole + damage + whole)
        with pytest.raises(CacheError, match=r"bench-results\.jsonl:2: not a result row"):
            _run(counting, cache)
    assert counting.runs == 1

    from bench.detection import main

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "manifest.json").write_text(json.dumps({"version": 1, "models": [ENTRY], "rejected": []}))
    (zoo / "bench-results.jsonl").write_bytes(whole + b"{\n" + whole)
    assert main(["--zoo", str(zoo), "--detectors", "mmbd"]) == 2
    assert "bench-results.jsonl:2: not a result row" in capsys.readouterr().err
