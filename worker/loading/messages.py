"""Wording shared by the loader's error messages, so every refusal lists and quotes things the same way."""

from __future__ import annotations

from collections.abc import Sequence

SHOWN = 5  # names listed in a message before "and N more"


def listing(items: Sequence[str]) -> str:
    """``a, b, c, d, e and 7 more``: the first few items, then how many were left out."""
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return f"{', '.join(items[:SHOWN])}{more}"


def first_line(exc: BaseException) -> str:
    """An exception's first line, at most 300 characters (torch's messages run to pages), or its type."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
