"""The run at the median probability carries the verdict most seeds agree with."""

from __future__ import annotations

import pytest

from worker.median_seed import median_run, verdicts_split


def test_the_median_run_is_the_middle_probability_whatever_the_order() -> None:
    assert median_run([0.9, 0.1, 0.5]) == 2
    assert median_run([0.2, 0.95, 0.97]) == 1
    assert median_run([0.4]) == 0
    assert median_run([0.3, 0.7, 0.3]) == 2  # tied: the later of the two lower runs sits in the middle


def test_an_even_number_of_runs_has_no_median_run() -> None:
    with pytest.raises(ValueError, match="odd number of seeds"):
        median_run([0.2, 0.8])
    with pytest.raises(ValueError, match="odd number of seeds"):
        median_run([])


def test_seeds_split_only_across_the_clean_line() -> None:
    assert verdicts_split(["clean", "backdoored", "backdoored"])
    assert not verdicts_split(["suspicious", "backdoored", "backdoored"])
    assert not verdicts_split(["clean", "clean", "clean"])
