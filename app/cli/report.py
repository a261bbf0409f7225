"""``backdoor-audit report AUDIT_ID --format html|json|sarif [-o FILE]``: fetch a finished audit's report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.cli.common import EXIT_CLEAN, CommandError
from app.cli.remote import add_server_arguments, connect


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("report", help="download the report of an audit (HTML, JSON or SARIF)")
    parser.add_argument("audit_id", metavar="AUDIT_ID")
    add_server_arguments(parser)
    parser.add_argument("--format", choices=("html", "json", "sarif"), default="json")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here instead of stdout")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    with connect(args) as client:
        if args.format == "html":
            text = client.get_report(args.audit_id, "html")
        else:
            text = json.dumps(client.get_report(args.audit_id, args.format), indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_CLEAN
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write the report to {str(args.output)!r}: {exc.strerror}") from exc
    print(f"wrote {args.format} report to {args.output}", file=sys.stderr)
    return EXIT_CLEAN
