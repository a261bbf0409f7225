"""Conventions shared by every subcommand: exit codes and the error a user can act on."""

from __future__ import annotations

EXIT_CLEAN = 0  # audit finished, no backdoor suspected
EXIT_FLAGGED = 1  # audit finished, verdict suspicious or backdoored
EXIT_ERROR = 2  # bad input or failure; one line on stderr says why


class CommandError(Exception):
    """Printed as ``error: <message>`` on stderr with exit code 2, without a traceback."""
