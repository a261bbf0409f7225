"""What ``serve``, ``keys`` and ``migrate`` share: ``--data-dir`` and the settings it selects."""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import ValidationError

from app.cli.common import CommandError
from app.core.settings import Settings


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="D",
        help="folder for the embedded database, broker and artifacts "
        "(default: $BACKDOOR_AUDIT_DATA_DIR or ~/.local/share/backdoor-audit); "
        "DATABASE_URL, BROKER_URL and STORAGE_DIR override its parts",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with ``--data-dir`` taking precedence over its variable."""
    try:
        settings = Settings(data_dir=args.data_dir.resolve()) if args.data_dir else Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise CommandError(f"invalid settings: {problems}") from exc
    settings.ensure_dirs()
    return settings
