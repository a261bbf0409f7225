"""The benchmark command refuses bad options before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.detection import main


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_is_refused_before_any_work(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--device", "cuda", "--zoo", str(tmp_path)]) == 2
    assert "no CUDA device is available" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_bad_options_are_refused_before_any_work(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
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
