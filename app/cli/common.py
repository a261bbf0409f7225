"""Conventions shared by every subcommand: exit codes, the error a user can act on, and the advice
printed beside a borderline verdict."""

from __future__ import annotations

EXIT_CLEAN = 0  # audit finished, no backdoor suspected
EXIT_FLAGGED = 1  # audit finished, verdict suspicious or backdoored
EXIT_ERROR = 2  # bad input or failure; one line on stderr says why


class CommandError(Exception):
    """Printed as ``error: <message>`` on stderr with exit code 2, without a traceback."""


def borderline_note(*, probability: float, suspicious_at: float, seed: int, seed_option: str) -> str:
    """The stderr line for a verdict another saliency seed could turn (report.json's ``borderline``),
    suggesting the two seeds after the one audited, set as this command sets one (``seed_option``)."""
    return (
        f"note: borderline: P(backdoored)={probability:.2f} is within one saliency seed's spread of the "
        f"{suspicious_at:.2f} threshold; rescan with {seed_option} {seed + 1} and {seed_option} {seed + 2} "
        "before relying on this verdict"
    )
