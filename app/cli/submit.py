"""``backdoor-audit submit``: upload a checkpoint to a server, start an audit and (with ``--wait``) gate on
its verdict with the same exit codes as ``scan``: 0 clean, 1 flagged, 2 error."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from app.cli.common import EXIT_CLEAN, EXIT_ERROR, EXIT_FLAGGED, CommandError, borderline_note
from app.cli.options import float_list, input_shape, json_object
from app.cli.remote import add_server_arguments, connect
from app.client import Audit, BackdoorAuditClient

# --fail-on X: exit 1 when the verdict is X or worse
SEVERITY = {"clean": 0, "suspicious": 1, "backdoored": 2}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "submit",
        help="upload a checkpoint to a server and audit it",
        description="Upload MODEL to a backdoor-audit server and start an audit. With --wait, follow it and "
        "exit 0 when clean, 1 when flagged (see --fail-on), 2 on any error.",
    )
    parser.add_argument("model", type=Path, metavar="MODEL", help="checkpoint file (.safetensors, .pt, ...)")
    add_server_arguments(parser)
    # the same parsers as scan's options, so a value scan refuses is refused here too, before any upload
    parser.add_argument(
        "--input-shape", type=input_shape, required=True, metavar="C,H,W", help="input shape, e.g. 1,28,28"
    )
    parser.add_argument("--num-classes", type=int, required=True, metavar="N", help="number of classes")
    parser.add_argument("--arch", help="registered architecture name (for state_dict checkpoints)")
    parser.add_argument("--mean", type=float_list, metavar="M1,M2,..", help="per-channel input mean")
    parser.add_argument("--std", type=float_list, metavar="S1,S2,..", help="per-channel input std")
    parser.add_argument("--name", help="a display name for the checkpoint")
    parser.add_argument(
        "--config", type=json_object, help="audit config overrides: inline JSON or the path of a .json file"
    )
    parser.add_argument("--wait", action="store_true", help="wait for the verdict and exit 0/1/2 on it")
    parser.add_argument(
        "--fail-on",
        choices=("suspicious", "backdoored"),
        default="suspicious",
        help="with --wait: the verdict from which to exit 1 (default: suspicious)",
    )
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="with --wait: give up after this long")
    parser.add_argument("--poll-interval", type=float, default=2.0, metavar="SECONDS")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.set_defaults(handler=run)


def exit_code(audit: Audit, fail_on: str) -> int:
    if audit.status != "succeeded":
        return EXIT_ERROR
    return EXIT_FLAGGED if SEVERITY.get(audit.verdict or "", 0) >= SEVERITY[fail_on] else EXIT_CLEAN


def _wait_with_progress(client: BackdoorAuditClient, audit: Audit, args: argparse.Namespace) -> Audit:
    # the bar goes to stderr, and only on a terminal, so stdout stays machine-readable in CI logs
    with tqdm(total=audit.total or None, desc="queued", unit="class", file=sys.stderr, disable=None) as bar:

        def show(current: Audit) -> None:
            bar.total = current.total or bar.total
            bar.set_description(current.status)
            # classes, fractional while a group is in flight
            bar.update(round(current.fraction * current.total, 1) - bar.n)

        return client.wait(audit.id, poll_interval=args.poll_interval, timeout=args.timeout, on_progress=show)


def run(args: argparse.Namespace) -> int:
    with connect(args) as client:
        checkpoint = client.upload_checkpoint(
            args.model,
            input_shape=args.input_shape,
            num_classes=args.num_classes,
            arch=args.arch,
            mean=args.mean,
            std=args.std,
            name=args.name,
        )
        audit = client.create_audit(checkpoint.id, args.config)
        if not args.json:
            reused = "" if checkpoint.created else " (already uploaded)"
            print(f"checkpoint {checkpoint.id}{reused} sha256 {checkpoint.sha256[:12]}; audit {audit.id} queued")
        if args.wait:
            audit = _wait_with_progress(client, audit, args)
    if args.json:
        print(json.dumps({"checkpoint": asdict(checkpoint), "audit": asdict(audit)}, indent=2))
    if not args.wait:
        return EXIT_CLEAN
    if audit.status == "failed":
        raise CommandError(f"audit {audit.id} failed on the server: {audit.error or 'no reason given'}")
    if not args.json:
        print(describe(audit))
    note_if_borderline(audit)
    return exit_code(audit, args.fail_on)


def note_if_borderline(audit: Audit) -> None:
    """scan's borderline note for a finished audit another saliency seed could turn. On stderr, so a
    --json run's log shows it too; every server version sends the audit's whole config."""
    if audit.borderline and audit.probability is not None:
        note = borderline_note(
            probability=audit.probability,
            suspicious_at=audit.config["scoring"]["suspicious_at"],
            seed=audit.config["saliency"]["seed"],
            seed_option="saliency.seed",
        )
        print(note, file=sys.stderr)


def describe(audit: Audit) -> str:
    """One line a person reads in a CI log."""
    if audit.status != "succeeded":
        return f"audit {audit.id}: {audit.status} ({audit.done}/{audit.total} classes)"
    probability = "" if audit.probability is None else f" (P(backdoored) = {audit.probability:.2f})"
    suspects = ", ".join(str(k) for k in audit.suspected_classes) or "none"
    return f"audit {audit.id}: {audit.verdict}{probability}; suspected target classes: {suspects}"
