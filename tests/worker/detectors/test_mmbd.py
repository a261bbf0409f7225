"""MM-BD: margins, the gamma null and its decision on models with a known answer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tests.worker.detectors.conftest import INPUT_SHAPE, NUM_CLASSES, RegionModel
from worker.detectors.base import DetectorInputError
from worker.detectors.mmbd import MMBD, fit_gamma, max_order_p_value
from worker.margins import class_margins


def fast() -> MMBD:
    return MMBD(starts=4, steps=60, lr=0.1)


def test_margin_is_own_logit_minus_best_other() -> None:
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 4.5]])
    assert class_margins(logits, torch.tensor([0, 2])).tolist() == pytest.approx([1.0, -0.5])


def test_gamma_fit_recovers_known_parameters() -> None:
    torch.manual_seed(0)
    samples = torch.distributions.Gamma(torch.tensor(4.0), torch.tensor(0.5)).sample((20_000,))  # rate 0.5
    shape, scale = fit_gamma(samples)
    assert shape == pytest.approx(4.0, rel=0.05) and scale == pytest.approx(2.0, rel=0.05)


def test_p_value_of_an_outlier_is_tiny_and_of_a_typical_value_is_not() -> None:
    null = torch.tensor([6.0, 6.4, 5.8, 6.9, 6.2, 6.6, 5.9, 6.3, 6.7])
    assert max_order_p_value(40.0, null) < 1e-6
    assert max_order_p_value(6.9, null) > 0.2
    assert max_order_p_value(0.4, null - 6.5) > 0.05  # negative margins are shifted, not rejected


def test_backdoor_target_has_the_outlying_margin_and_is_flagged(backdoored_model: RegionModel) -> None:
    detection = fast().detect(backdoored_model, INPUT_SHAPE, NUM_CLASSES)
    assert detection.method == "mmbd"
    assert detection.suspected_classes[0] == 7
    assert detection.verdict == "backdoored" and detection.details["p_value"] < 0.01
    assert detection.class_scores[7] > 30 > max(s for k, s in enumerate(detection.class_scores) if k != 7)


def test_clean_model_is_not_flagged(clean_model: RegionModel) -> None:
    detection = fast().detect(clean_model, INPUT_SHAPE, NUM_CLASSES)
    # the best margin for class k is its factor (cell k white, the rest black)
    assert detection.class_scores == pytest.approx(clean_model.scale.tolist(), abs=0.05)
    assert detection.verdict == "clean" and detection.probability < 0.95


def test_same_seed_same_statistics_and_model_left_as_found(backdoored_model: RegionModel) -> None:
    backdoored_model.train()
    first = fast().class_statistics(backdoored_model, INPUT_SHAPE, NUM_CLASSES, seed=3)
    second = fast().class_statistics(backdoored_model, INPUT_SHAPE, NUM_CLASSES, seed=3)
    assert torch.equal(first, second)
    assert backdoored_model.training and backdoored_model.scale.requires_grad
    assert backdoored_model.scale.grad is None


@pytest.mark.parametrize("num_classes", [1, 2])
def test_a_model_with_fewer_than_three_classes_is_refused_with_what_to_use(num_classes: int) -> None:
    # the null is fitted to every class but the largest: one or two classes leave too few to fit
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, num_classes))
    with pytest.raises(DetectorInputError, match=f"at least 3 classes and this one has {num_classes}.*agnostic"):
        fast().detect(model, (1, 4, 4), num_classes)


def test_nan_margins_are_refused_not_called_clean(clean_model: RegionModel) -> None:
    class NaNOffBlank(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            lit = x.flatten(1).abs().sum(dim=1, keepdim=True) > 0
            return clean_model(x) + torch.where(lit, math.nan, 0.0)

    with pytest.raises(DetectorInputError, match="NaN or infinite, so there is no verdict"):
        MMBD(starts=2, steps=3).detect(NaNOffBlank(), INPUT_SHAPE, NUM_CLASSES)
