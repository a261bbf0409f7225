"""A class's lead over its strongest rivals, what the scorer's logistic reads."""

from __future__ import annotations

import pytest

from worker.scoring.calibration import RIVAL_WEIGHTS, RIVALS, class_leads


def test_a_gray_class_leads_by_its_evidence_less_its_strongest_rivals_mean() -> None:
    assert (RIVALS, RIVAL_WEIGHTS["gray"]) == (3, 1.0)
    evidence = [1.0, 6.0, 3.0, -5.0, 2.0]
    rivals_mean = [(6 + 3 + 2) / 3, (3 + 2 + 1) / 3, (6 + 2 + 1) / 3, (6 + 3 + 2) / 3, (6 + 3 + 1) / 3]
    assert class_leads(evidence, "gray") == pytest.approx([e - m for e, m in zip(evidence, rivals_mean, strict=True)])


def test_a_trigger_alone_leads_by_more_than_a_natural_class_among_close_rivals() -> None:
    trigger = class_leads([5.0, -1.0, -1.5, -2.0, -3.0], "gray")[0]
    natural = class_leads([5.5, 3.3, 3.0, 2.5, -1.0], "gray")[0]
    assert trigger > natural


def test_the_order_of_the_classes_is_kept() -> None:
    evidence = [0.3, 4.0, -2.0, 4.0, 1.5, 9.0, 0.0]
    leads = class_leads(evidence, "gray")
    for i in range(len(evidence)):
        for j in range(len(evidence)):
            if evidence[i] > evidence[j]:
                assert leads[i] > leads[j]


def test_colour_keeps_the_evidence_and_few_classes_count_the_rivals_there_are() -> None:
    assert RIVAL_WEIGHTS["colour"] == 0.0
    assert class_leads([1.0, 6.0, 3.0], "colour") == [1.0, 6.0, 3.0]
    assert class_leads([6.0, 2.0, 1.0], "gray") == pytest.approx([4.5, -1.5, -3.0])
    assert class_leads([6.0], "gray") == [6.0]
