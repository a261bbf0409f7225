"""The wording shared by the loader's messages."""

from __future__ import annotations

from worker.loading.messages import SHOWN, first_line, listing


def test_listing_shows_the_first_few_and_counts_the_rest() -> None:
    names = [f"w{i}" for i in range(SHOWN + 2)]
    assert listing(names) == "w0, w1, w2, w3, w4 and 2 more"
    assert listing(names[:SHOWN]) == "w0, w1, w2, w3, w4"


def test_first_line_keeps_one_line_or_names_the_type() -> None:
    assert first_line(RuntimeError("  shape mismatch\n  at frame 3\n")) == "shape mismatch"
    assert first_line(RuntimeError("x" * 1000)) == "x" * 300
    assert first_line(MemoryError()) == "MemoryError"
