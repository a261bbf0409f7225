"""``backdoor-audit report AUDIT_ID --format html|json|sarif|pdf [-o FILE]``: fetch a finished audit's report.

PDF is printed here from the server's self-contained HTML report, so the server needs no PDF library.
"""

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
    parser.add_argument("--format", choices=("html", "json", "sarif", "pdf"), default="json")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here instead of stdout")
    parser.add_argument(
        "--artifact-uri",
        metavar="PATH",
        help="SARIF only: the checkpoint's path in your repository, so code scanning can place the findings",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.format == "pdf" and args.output is None:
        raise CommandError("a PDF is binary: pass -o FILE (e.g. -o audit.pdf)")
    with connect(args) as client:
        if args.format in ("html", "pdf"):
            text = client.get_report(args.audit_id, "html")
        else:
            report = client.get_report(args.audit_id, args.format, artifact_uri=args.artifact_uri)
            text = json.dumps(report, indent=2) + "\n"
    data = _to_pdf(text) if args.format == "pdf" else text.encode("utf-8")
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_CLEAN
    try:
        args.output.write_bytes(data)
    except OSError as exc:
        raise CommandError(f"cannot write the report to {str(args.output)!r}: {exc.strerror}") from exc
    print(f"wrote {args.format} report to {args.output}", file=sys.stderr)
    return EXIT_CLEAN


def _to_pdf(html: str) -> bytes:
    from app.reports.pdf import PdfUnavailableError, html_to_pdf

    try:
        return html_to_pdf(html)
    except PdfUnavailableError as exc:
        raise CommandError(str(exc)) from exc
