"""The detection benchmark's quick variant, end to end: it builds the quick zoo, runs every detector on
it in one run, and prints the per-family table (the issue asks for this in CI; the full run is documented
in BENCHMARKS.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from worker.zoo.provenance import build_hash, this_machine

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_benchmark_runs_every_detector_and_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "bench.detection", "--quick", "--zoo", str(tmp_path / "zoo"), "--split", "all"]
    result = subprocess.run([*command, "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    print(result.stdout)  # the figures, in the CI log
    payload = json.loads(out.read_text())
    summary = payload["summary"]
    # the run names the weights it measured: the hash of the quick zoo's files, also in the header
    manifest = json.loads((tmp_path / "zoo" / "manifest.json").read_text())
    assert payload["zoo_build"] == build_hash(manifest["models"])
    assert f"(build {payload['zoo_build']})" in result.stdout
    assert payload["machine"]["cpu"] == this_machine()["cpu"]  # and the machine its seconds were measured on
    for detector in ("agnostic", "mmbd", "neural-cleanse"):
        assert f"| {detector} | overall |" in result.stdout, result.stdout
        rows = [row for row in summary if row["detector"] == detector and row["group"] == "overall"]
        assert len(rows) == 1 and 0.0 <= rows[0]["auroc"] <= 1.0 and rows[0]["median_seconds"] > 0

    # the calibration command reuses the run's cached rows and saves every class's evidence with each
    saved = tmp_path / "rows.jsonl"
    calibrate = [sys.executable, "-m", "bench.calibrate", "--zoo", str(tmp_path / "zoo"), "--split", "all"]
    result = subprocess.run(
        [*calibrate, "--seeds", "0", "--save", str(saved)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    classes = {m["id"]: m["num_classes"] for m in manifest["models"]}
    rows = [json.loads(line) for line in saved.read_text().splitlines()]
    assert sorted(r["model"] for r in rows) == sorted(classes)
    for row in rows:
        assert len(row["class_evidence"]) == classes[row["model"]] and max(row["class_evidence"]) == row["evidence"]
