"""Benchmark metrics against values computed by hand."""

from __future__ import annotations

import math

import pytest

from worker.zoo.metrics import auroc, cross_entropy, flag_rate, target_top1, tpr_at_fpr


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
