"""``backdoor-audit zoo build`` refuses a selection that matches no planned model, with exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main


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
    # native: this process has computed already, so the AVX2 pin would be refused first
    assert main(["zoo", "build", "--out", str(tmp_path / "zoo"), "--kernels", "native", *selection]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "zoo").exists()
