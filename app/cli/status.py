"""``backdoor-audit status AUDIT_ID``: where an audit stands (exit 0 when the server answered)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from app.cli.common import EXIT_CLEAN
from app.cli.remote import add_server_arguments, connect
from app.cli.submit import describe, note_if_borderline


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("status", help="show the status and verdict of an audit on a server")
    parser.add_argument("audit_id", metavar="AUDIT_ID")
    add_server_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the audit as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    with connect(args) as client:
        audit = client.get_audit(args.audit_id)
    if args.json:
        print(json.dumps(asdict(audit), indent=2))
    else:
        print(describe(audit))
        if audit.error:
            print(f"error: {audit.error}")
    note_if_borderline(audit)
    return EXIT_CLEAN
