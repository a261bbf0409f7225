"""``backdoor-audit demo``: the quick start. Trains (once) a small backdoored Fashion-MNIST model and scans it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

DEFAULT_CACHE = Path(os.environ.get("BACKDOOR_AUDIT_CACHE", Path.home() / ".cache" / "backdoor-audit"))


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train a small backdoored example model (once, about a minute) and scan it",
        description="Builds the example: a Fashion-MNIST SmallCNN with a 3x3 white BadNets patch that sends any "
        "image to class 3, then runs `scan` on it. --clean scans its clean twin instead.",
    )
    parser.add_argument("--clean", action="store_true", help="scan the clean twin instead of the backdoored model")
    parser.add_argument("--out", type=Path, default=Path("audit-out"), help="report folder (default: audit-out)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"where examples are kept ({DEFAULT_CACHE})")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from app.cli import main
    from worker.examples import example_model

    print("building the example model (trained once, then cached) ...")
    example = example_model(args.cache / "examples", backdoored=not args.clean)
    planted = f"BadNets patch to class {example.target_class}" if example.target_class is not None else "no backdoor"
    accuracy = f"clean accuracy {example.clean_accuracy:.2f}"
    success = f", attack success {example.attack_success:.2f}" if example.attack_success is not None else ""
    print(f"example: {example.path} ({planted}; {accuracy}{success})")
    return main(["scan", *example.cli_args(), "--out", str(args.out), "--device", args.device])
