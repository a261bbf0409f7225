"""``backdoor-audit zoo build`` refuses a selection that matches no planned model, with exit code 2, and
trains with the pinned kernels unless told otherwise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from tests.worker.zoo.test_provenance import HAS_AVX2
from worker.zoo.provenance import PINNED_KERNELS


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        (["--only", "nothing-*"], "matches no planned model id"),
        (["--quick", "--only", "*blended*", "--split", "dev"], "in the dev split"),
    ],
)
def test_an_empty_selection_exits_2_before_training(
    selection: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # native: this process has computed already, so the pin would be refused first
    assert main(["zoo", "build", "--out", str(tmp_path / "zoo"), "--kernels", "native", *selection]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "zoo").exists()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_AVX2, reason="the pin needs a CPU with AVX2")
@pytest.mark.parametrize(("kernels", "switches"), [([], PINNED_KERNELS), (["--kernels", "native"], {})])
def test_a_build_records_the_kernels_it_trained_with(
    kernels: list[str], switches: dict[str, str], tmp_path: Path
) -> None:
    # a fresh process, as a user runs it: the pin must come before the plan's first torch op
    command = [sys.executable, "-m", "app.cli", "zoo", "build", "--out", str(tmp_path), "--quick", "--threads", "1"]
    subprocess.run([*command, "--only", "gray-fashion_mnist-clean-lenet5-s1", *kernels], check=True, timeout=300)
    [entry] = json.loads((tmp_path / "manifest.json").read_text())["models"]
    assert entry["trained_on"]["kernels"] == switches
    if switches:
        assert entry["trained_on"]["cpu_capability"] == "AVX2"
