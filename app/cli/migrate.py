"""``backdoor-audit migrate``: bring the database schema up to date (the compose one-shot service)."""

from __future__ import annotations

import argparse

from sqlalchemy.exc import OperationalError

from app.cli.common import CommandError
from app.cli.deployment import add_data_dir_argument, settings_from_args
from app.core.db import migrate_database


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "migrate", help="apply database migrations", description="Upgrade the database schema to the latest version."
    )
    add_data_dir_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    try:
        migrate_database(settings.database_url_resolved)
    except OperationalError as exc:
        raise CommandError(f"cannot reach the database ({exc.orig}); check DATABASE_URL") from exc
    print("database schema is up to date")
    return 0
