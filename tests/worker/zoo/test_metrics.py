"""Benchmark metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from worker.zoo.metrics import (
    auroc,
    auroc_difference,
    auroc_interval,
    cross_entropy,
    flag_rate,
    flag_rate_interval,
    target_top1,
    tpr_at_fpr,
)


def test_auroc_by_hand_with_a_tie() -> None:
    # positives 0.9, 0.5 vs negatives 0.5, 0.1: pairs (0.9>0.5, 0.9>0.1, 0.5=0.5, 0.5>0.1) -> 3.5 / 4
    assert auroc([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0]) == pytest.approx(0.875)
    assert auroc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 0.0
    assert auroc([0.3, 0.3], [1, 0]) == 0.5


def test_auroc_needs_both_classes() -> None:
    assert math.isnan(auroc([0.2, 0.4], [1, 1]))


def test_tpr_at_fpr_by_hand() -> None:
    negatives = [0.1 * i for i in range(20)]  # 0.0 .. 1.9; 5% of 20 = 1 clean model may be flagged
    positives = [1.85, 1.95, 2.5, 0.5]  # above the 2nd-largest clean score (1.8): 3 of 4
    scores, labels = negatives + positives, [0] * 20 + [1] * 4
    assert tpr_at_fpr(scores, labels, 0.05) == pytest.approx(0.75)
    # with 10 clean models, 5% allows none: only scores above the largest clean one (0.9) count
    assert tpr_at_fpr([0.1 * i for i in range(10)] + [0.95, 0.9], [0] * 10 + [1, 1], 0.05) == 0.5


def test_cross_entropy_by_hand_and_clipping() -> None:
    assert cross_entropy([0.5, 0.5], [1, 0]) == pytest.approx(math.log(2))
    assert cross_entropy([0.9, 0.2], [1, 0]) == pytest.approx(-(math.log(0.9) + math.log(0.8)) / 2)
    assert cross_entropy([0.0], [1]) == pytest.approx(-math.log(1e-6))  # finite, not inf


def test_flag_rate_and_target_top1() -> None:
    assert flag_rate([True, False, False, False]) == 0.25
    assert target_top1([3, 1, 7], [[3], [2, 1], [0]]) == pytest.approx(2 / 3)
    assert math.isnan(target_top1([], []))
    with pytest.raises(ValueError):
        target_top1([1], [])


def test_flag_rate_interval_matches_wilson_by_hand_and_stays_in_the_unit_interval() -> None:
    # 2 of 32: centre (1/16 + 1.96^2/64) / (1 + 1.96^2/32), half-width from the same terms
    low, high = flag_rate_interval([True] * 2 + [False] * 30)
    assert (low, high) == (pytest.approx(0.0173, abs=1e-4), pytest.approx(0.2015, abs=1e-4))
    low, high = flag_rate_interval([False] * 32)
    assert low == 0.0 and high == pytest.approx(0.1072, abs=1e-4)  # none flagged still allows 11%
    assert flag_rate_interval([True] * 5)[1] == 1.0
    assert all(math.isnan(bound) for bound in flag_rate_interval([]))


def test_auroc_interval_is_a_point_for_perfect_separation_and_needs_both_classes() -> None:
    assert auroc_interval([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == (1.0, 1.0)
    low, high = auroc_interval([0.9, 0.8], [1, 1])
    assert math.isnan(low) and math.isnan(high)


def test_auroc_interval_holds_the_estimate_and_narrows_with_more_models() -> None:
    """Overlapping score distributions: the interval contains the AUROC, is reproducible for a seed,
    and is narrower on 200 models than on 20 drawn from the same distributions."""
    rng = np.random.default_rng(1)

    def draw(n: int) -> tuple[np.ndarray, list[int]]:
        return np.concatenate([rng.normal(1, 1, n), rng.normal(0, 1, n)]), [1] * n + [0] * n

    small, large = draw(10), draw(100)
    low, high = auroc_interval(*small)
    assert low < auroc(*small) < high
    assert auroc_interval(*small) == (low, high)
    large_low, large_high = auroc_interval(*large)
    assert large_high - large_low < (high - low) * 2 / 3


def test_auroc_difference_is_paired() -> None:
    labels = [1, 1, 1, 0, 0, 0]
    scores = [0.9, 0.7, 0.4, 0.5, 0.2, 0.1]
    assert auroc_difference(scores, scores, labels) == (0.0, 0.0, 0.0)
    # the other detector ranks every pair the wrong way: AUROC 0 against 8/9
    difference, low, high = auroc_difference(scores, [-s for s in scores], labels)
    assert difference == pytest.approx(8 / 9 - 1 / 9)
    assert 0 < low <= difference <= high <= 1
    # a constant shift of one detector's scores changes no ranking: the paired draws cancel exactly
    assert auroc_difference(scores, [s + 5 for s in scores], labels) == (0.0, 0.0, 0.0)
