"""``backdoor-audit migrate``: bring the database schema up to date (the compose one-shot service)."""

from __future__ import annotations

import argparse

from app.cli.deployment import add_data_dir_argument, database_errors, settings_from_args
from app.core.db import migrate_database


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "migrate", help="apply database migrations", description="Upgrade the database schema to the latest version."
    )
    add_data_dir_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with database_errors(settings):
        migrate_database(settings.database_url_resolved)
    print("database schema is up to date")
    return 0
