"""The ``backdoor-audit`` command. Subcommand NAME lives in module ``app.cli.NAME`` with ``register(subparsers)``.

Only the chosen subcommand's module is imported, so ``scan`` or ``submit`` never pay for the database and
queue libraries ``serve`` imports (celery, sqlalchemy: most of the start-up time); ``backdoor-audit --help``
or an unknown command imports them all to list every subcommand. No module imports torch at import time;
the commands that need it import it when they run."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from app.cli.common import EXIT_ERROR, CommandError

COMMANDS = ("scan", "demo", "submit", "status", "report", "serve", "keys", "migrate", "archs", "zoo")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with ``command`` alone registered when it names a subcommand, else with all of them."""
    parser = argparse.ArgumentParser(
        prog="backdoor-audit",
        description="Audit image classifiers for backdoors with input-agnostic saliency maps.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in [command] if command in COMMANDS else COMMANDS:
        importlib.import_module(f"app.cli.{name}").register(subparsers)
    return parser


def chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand when it comes first. The top-level parser's only option is ``-h``, which must list
    every subcommand, so anything else first (``-h submit``) gets the parser with all of them."""
    return argv[0] if argv and not argv[0].startswith("-") else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(chosen_command(argv))
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
