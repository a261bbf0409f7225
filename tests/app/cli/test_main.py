"""The top-level ``backdoor-audit`` parser: it imports only the chosen subcommand's module, and still lists
every subcommand where a person asks for the list."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import COMMANDS, build_parser, main

REPO = Path(__file__).resolve().parents[3]
HEAVY = ("celery", "sqlalchemy", "torch")  # what serve, keys, migrate (or the science) pull in


def _modules_loaded_by(argv: list[str]) -> list[str]:
    """Which of ``HEAVY`` a fresh interpreter has imported after ``main(argv)`` returned or exited."""
    code = (
        "import sys\nfrom app.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        f"print('loaded:', *(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    last_line = result.stdout.splitlines()[-1]
    assert last_line.startswith("loaded:"), result.stdout
    return last_line.split()[1:]


@pytest.mark.parametrize("argv", [["submit", "--help"], ["status", "--help"], ["report", "--help"], ["scan", "-h"]])
def test_a_client_command_imports_no_database_queue_or_torch_library(argv: list[str]) -> None:
    assert _modules_loaded_by(argv) == []


def test_serve_still_gets_its_libraries() -> None:
    # the check above could pass by never loading anything; serve's module does import both at the top
    assert {"celery", "sqlalchemy"} <= set(_modules_loaded_by(["serve", "--help"]))


@pytest.mark.parametrize("argv", [["--help"], ["-h", "submit"], ["no-such-command"]])
def test_the_top_level_help_and_errors_list_every_subcommand(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(argv)
    captured = capsys.readouterr()
    for name in COMMANDS:
        assert name in captured.out + captured.err, name


@pytest.mark.parametrize("name", COMMANDS)
def test_each_name_is_registered_by_its_own_module(name: str) -> None:
    (subcommands,) = (a for a in build_parser(name)._actions if isinstance(a, argparse._SubParsersAction))
    assert list(subcommands._name_parser_map) == [name]
