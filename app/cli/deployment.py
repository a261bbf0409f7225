"""What ``serve``, ``keys`` and ``migrate`` share: ``--data-dir``, the settings it selects, and turning a
database that cannot be used into one actionable line (exit 2) instead of a traceback."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import make_url
from sqlalchemy.exc import OperationalError

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


@contextmanager
def database_errors(settings: Settings) -> Iterator[None]:
    """Inside the block, a database that cannot be reached or opened (``OperationalError``: refused
    connection, wrong password, unwritable SQLite file) becomes a ``CommandError`` saying which database
    and what to check. Other database errors are bugs and keep their traceback."""
    try:
        yield
    except OperationalError as exc:
        # the driver's message spans lines (psycopg2 adds a hint); the promise is one line on stderr
        reason = "; ".join(line.strip() for line in str(exc.orig).splitlines() if line.strip())
        url = make_url(settings.database_url_resolved).render_as_string(hide_password=True)
        if settings.database_url is None:  # the embedded SQLite file
            check = "check that --data-dir (or $BACKDOOR_AUDIT_DATA_DIR) is a writable folder"
        else:
            check = "check DATABASE_URL and that the database server is running"
        raise CommandError(f"cannot use the database {url} ({reason}); {check}") from exc
