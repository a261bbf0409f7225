"""The ``backdoor-audit`` command. Each subcommand lives in its own module with ``register(subparsers)``;
modules are imported lazily per call so ``submit`` or ``serve --help`` never pay for importing torch."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from app.cli.common import EXIT_ERROR, CommandError

# subcommand name -> module under app.cli that registers it
COMMANDS: dict[str, str] = {
    "scan": "scan",
    "demo": "demo",
    "submit": "submit",
    "status": "status",
    "report": "report",
    "serve": "serve",
    "keys": "keys",
    "migrate": "migrate",
    "archs": "archs",
    "zoo": "zoo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backdoor-audit",
        description="Audit image classifiers for backdoors with input-agnostic saliency maps.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in dict.fromkeys(COMMANDS.values()):
        importlib.import_module(f"app.cli.{module_name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
