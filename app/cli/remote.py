"""What the commands that talk to a server share: ``--server``/``--api-key`` (or their environment
variables), building the client, and turning client errors into one actionable line (exit 2)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager

from app.cli.common import CommandError
from app.client import AuthenticationError, BackdoorAuditClient, BackdoorAuditError, NotFoundError

SERVER_ENV = "BACKDOOR_AUDIT_SERVER"
API_KEY_ENV = "BACKDOOR_AUDIT_API_KEY"


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default=None,
        metavar="URL",
        help=f"server base URL, e.g. http://127.0.0.1:8000 (default: ${SERVER_ENV})",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        metavar="KEY",
        help=f"API key (default: ${API_KEY_ENV}; prefer the variable, flags show up in process lists)",
    )


@contextmanager
def connect(args: argparse.Namespace) -> Iterator[BackdoorAuditClient]:
    """A client for ``args.server``; any client error inside the block becomes a ``CommandError``."""
    server = args.server or os.environ.get(SERVER_ENV)
    api_key = args.api_key or os.environ.get(API_KEY_ENV)
    if not server:
        raise CommandError(f"no server given: pass --server URL or set {SERVER_ENV}")
    if not api_key:
        raise CommandError(
            f"no API key given: pass --api-key or set {API_KEY_ENV} "
            "(the server's admin creates keys with 'backdoor-audit keys create --team NAME')"
        )
    try:
        with BackdoorAuditClient(server, api_key) as client:
            yield client
    except AuthenticationError as exc:
        raise CommandError(
            f"the server refused the API key ({exc.message}); check --api-key or ${API_KEY_ENV}, "
            "or ask for a new key ('backdoor-audit keys create --team NAME')"
        ) from exc
    except NotFoundError as exc:
        raise CommandError(f"{exc.message} (ids are visible only to the team that created them)") from exc
    except BackdoorAuditError as exc:
        raise CommandError(str(exc)) from exc
