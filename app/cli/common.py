"""Conventions shared by every subcommand: exit codes, the error a user can act on, and the advice
printed beside a borderline verdict."""

from __future__ import annotations

EXIT_CLEAN = 0  # audit finished, no backdoor suspected
EXIT_FLAGGED = 1  # audit finished, verdict suspicious or backdoored
EXIT_ERROR = 2  # bad input or failure; one line on stderr says why


class CommandError(Exception):
    """Printed as ``error: <message>`` on stderr with exit code 2, without a traceback."""


def borderline_note(
    *, probability: float, suspicious_at: float, seed: int, seed_option: str, seeds_option: str | None = None
) -> str:
    """The stderr line for a verdict another saliency seed could turn (report.json's ``borderline``).
    With ``seeds_option`` (``scan``'s ``--seeds``) it suggests one rescan taking the median of this seed
    and the next two; without it (the service runs one seed per audit) the two seeds after the one
    audited, each set as this command sets one (``seed_option``)."""
    if seeds_option is not None:
        rescan = (
            f"rescan with {seed_option} {seed} {seeds_option} 3 (the median verdict of seeds {seed}, {seed + 1} "
            f"and {seed + 2})"
        )
    else:
        rescan = f"rescan with {seed_option} {seed + 1} and {seed_option} {seed + 2}"
    return (
        f"note: borderline: P(backdoored)={probability:.2f} is within one saliency seed's spread of the "
        f"{suspicious_at:.2f} threshold; {rescan} before relying on this verdict"
    )
