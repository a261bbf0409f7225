"""The checkpoint metadata options ``scan`` and ``submit`` share: one parser each, so both commands accept
and refuse the same values, before any work (``submit`` used to pass ``--input-shape 28,28`` to the server)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from app.cli import build_parser
from app.cli.options import json_object

SUBMIT_REQUIRED = ["--input-shape", "1,28,28", "--num-classes", "10"]


def _parse_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--input-shape", "28,28", "argument --input-shape: expected C,H,W such as 1,28,28 or 3,32,32, got '28,28'"),
        ("--input-shape", "1,0,28", "argument --input-shape: C, H and W must be positive, got '1,0,28'"),
        ("--mean", "0.5;0.5", "argument --mean: expected comma-separated numbers such as 0.5,0.5,0.5, got '0.5;0.5'"),
        ("--config", "[1]", "argument --config: expected a JSON object such as"),
        ("--config", "cfg", "give a JSON object inline or the path of a file ending in .json"),
    ],
)
def test_scan_and_submit_refuse_the_same_values_with_the_same_message(
    option: str, value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "cfg").write_text('{"saliency": {"seed": 1}}')  # a file, but not a .json one
    model = str(tmp_path / "model.pt")
    errors = []
    for argv in (["scan", model], ["submit", model, *SUBMIT_REQUIRED]):
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(tmp_path)
            errors.append(_parse_error([*argv, option, value], capsys))
    assert errors[0].replace("scan", "submit") == errors[1], errors
    assert message in errors[1]


def test_submit_parses_values_as_scan_does(tmp_path: Path) -> None:
    config = tmp_path / "audit.json"
    config.write_text('{"saliency": {"seed": 1}}')
    shared = ["--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", "--config", str(config)]
    scan = build_parser().parse_args(["scan", "m.pt", "--input-shape", "3,32,32", *shared])
    submit = build_parser().parse_args(["submit", "m.pt", "--input-shape", "3,32,32", "--num-classes", "10", *shared])
    for name in ("input_shape", "mean", "std", "config"):
        assert getattr(submit, name) == getattr(scan, name), name
    assert submit.input_shape == (3, 32, 32) and submit.config == {"saliency": {"seed": 1}}


def test_a_missing_json_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"cannot read '.*missing\.json': No such file"):
        json_object(str(tmp_path / "missing.json"))
