"""``backdoor-audit keys create --team NAME``: issue an API key (stored hashed; printed once, last line)."""

from __future__ import annotations

import argparse

from app import crud
from app.cli.common import CommandError
from app.cli.deployment import add_data_dir_argument, database_errors, settings_from_args
from app.core.db import migrate_database, session_scope

MAX_TEAM_NAME = 100  # the column width of teams.name


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("keys", help="manage API keys", description="Manage the API keys of teams.")
    actions = parser.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="create a key for a team (the team is created if new)",
        description="Create an API key for TEAM and print it as the last line. Only its hash is stored: "
        "keep the printed key, it cannot be shown again.",
    )
    create.add_argument("--team", required=True, help="team name; the key sees only this team's data")
    add_data_dir_argument(create)
    create.set_defaults(handler=create_key)


def create_key(args: argparse.Namespace) -> int:
    team_name = args.team.strip()
    if not team_name or len(team_name) > MAX_TEAM_NAME:
        raise CommandError(f"--team must be a non-empty name of at most {MAX_TEAM_NAME} characters")
    settings = settings_from_args(args)
    with database_errors(settings):
        if settings.database_url is None:  # embedded: nobody else runs migrations for this database
            migrate_database(settings.database_url_resolved)
        with session_scope(settings.database_url_resolved) as session:
            team = crud.get_or_create_team(session=session, name=team_name)
            key = crud.create_api_key(session=session, team=team)
    print(f"created an API key for team {team_name!r}; it is shown only once:")
    print(key)
    return 0
