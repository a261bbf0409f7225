"""The layout benchmark measures both layouts and names the one the loader would pick."""

from __future__ import annotations

import sys

import pytest

from bench import layout_speed


def test_prints_both_layouts_and_the_loaders_choice(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["layout_speed.py", "--cases", "lenet5:1x28,lenet5:1x40", "--repeats", "1"])
    assert layout_speed.main() == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    assert [(row[1], row[-1].rstrip(" |")) for row in rows] == [("1x28x28", "channels-last"), ("1x40x40", "NCHW")]
    assert all(float(row[3]) > 0 and float(row[4]) > 0 for row in rows)


def test_cases_name_the_architecture_channels_and_side() -> None:
    assert layout_speed.parse_case("resnet18:3x64") == ("resnet18", 3, 64)
