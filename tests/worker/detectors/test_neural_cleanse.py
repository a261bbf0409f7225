"""Neural Cleanse: it needs clean images, finds the small trigger, and scores it with the MAD index."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tests.worker.detectors.conftest import INPUT_SHAPE, NUM_CLASSES, RegionModel, region_images
from worker.detectors.base import DetectorInputError
from worker.detectors.neural_cleanse import NeuralCleanse, adjust_cost, small_side_anomaly_index
from worker.scoring.verdict import anomaly_index


def fast() -> NeuralCleanse:
    return NeuralCleanse(steps=150, batch_size=8)


def test_anomaly_index_by_hand() -> None:
    norms = torch.tensor([10.0, 12.0, 14.0, 16.0, 2.0])
    # median 12, |x - 12| = [2, 0, 2, 4, 10] -> MAD 2 -> sigma 2.9652
    index = small_side_anomaly_index(norms)
    assert index.tolist() == pytest.approx([2 / 2.9652, 0.0, -2 / 2.9652, -4 / 2.9652, 10 / 2.9652], rel=1e-4)


def test_anomaly_index_of_an_even_class_count_takes_the_true_median_by_hand() -> None:
    norms = torch.tensor([10.0, 12.0, 14.0, 16.0, 2.0, 18.0])
    # median (12 + 14) / 2 = 13 (torch.median: 12); |x - 13| = [3, 1, 1, 3, 11, 5] -> MAD (3 + 3) / 2 = 3
    index = small_side_anomaly_index(norms)
    assert index.tolist() == pytest.approx([(13 - n) / (1.4826 * 3) for n in norms.tolist()], rel=1e-6)
    # one helper for both detectors: the small side of the norms is the large side of their negation
    assert torch.equal(index, anomaly_index(-norms, floor=1e-12))


def test_refuses_without_clean_images_and_says_what_to_pass(clean_model: RegionModel) -> None:
    with pytest.raises(DetectorInputError, match="clean images"):
        NeuralCleanse().detect(clean_model, INPUT_SHAPE, NUM_CLASSES)
    with pytest.raises(DetectorInputError, match="shaped"):
        NeuralCleanse().detect(clean_model, INPUT_SHAPE, NUM_CLASSES, clean_images=torch.rand(4, 1, 8, 8))


def test_backdoor_target_needs_the_smallest_mask_and_is_flagged(backdoored_model: RegionModel) -> None:
    images, _ = region_images(40)
    backdoored_model.train()
    detection = fast().detect(backdoored_model, INPUT_SHAPE, NUM_CLASSES, clean_images=images)
    norms = detection.details["mask_l1"]
    assert detection.suspected_classes[0] == 7
    assert norms[7] < 0.6 * min(n for k, n in enumerate(norms) if k != 7), norms
    assert detection.verdict != "clean" and detection.details["anomaly_index"] > 2
    assert backdoored_model.training and backdoored_model.scale.grad is None


def test_clean_model_has_a_weaker_outlier_than_the_backdoored_one(
    clean_model: RegionModel, backdoored_model: RegionModel
) -> None:
    images, _ = region_images(40)
    clean = fast().detect(clean_model, INPUT_SHAPE, NUM_CLASSES, clean_images=images)
    backdoored = fast().detect(backdoored_model, INPUT_SHAPE, NUM_CLASSES, clean_images=images)
    assert clean.details["anomaly_index"] < backdoored.details["anomaly_index"] / 2
    assert clean.probability < backdoored.probability


def test_nan_mask_norms_are_refused_not_called_clean(clean_model: RegionModel) -> None:
    class NaNOffBlank(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            lit = x.flatten(1).abs().sum(dim=1, keepdim=True) > 0
            return clean_model(x) + torch.where(lit, math.nan, 0.0)

    images, _ = region_images(10)
    with pytest.raises(DetectorInputError, match="NaN or infinite, so there is no verdict"):
        NeuralCleanse(steps=5, batch_size=2).detect(NaNOffBlank(), INPUT_SHAPE, NUM_CLASSES, clean_images=images)


def _costs(history: list[list[bool]], *, patience: int = 3, factor: float = 2.0) -> list[list[float]]:
    """Each step's costs of classes whose triggers worked or failed as ``history`` says (one row a step)."""
    classes = len(history[0])
    cost = torch.ones(classes)
    successes = failures = torch.zeros(classes, dtype=torch.long)
    costs = []
    for works in history:
        cost, successes, failures = adjust_cost(
            cost, torch.tensor(works), successes, failures, patience=patience, factor=factor
        )
        costs.append(cost.tolist())
    return costs


def test_the_cost_rises_after_patience_successes_and_falls_after_patience_failures_in_a_row() -> None:
    t, f = True, False
    # three classes with patience 3: always working, always failing, working two steps in three
    costs = _costs([[t, f, t], [t, f, t], [t, f, f], [t, f, t], [t, f, t], [t, f, f]])
    down = 2.0**-1.5
    assert [c[0] for c in costs] == [1, 1, 2, 2, 2, 4]  # raised on the 3rd and 6th success in a row
    assert [c[1] for c in costs] == pytest.approx([1, 1, down, down, down, down * down])
    # neither patience successes nor patience failures in a row: the cost stays (it was lowered at
    # every third step when any step of the window had failed)
    assert [c[2] for c in costs] == [1, 1, 1, 1, 1, 1]


def test_a_failure_restarts_the_count_of_successes() -> None:
    t, f = True, False
    costs = _costs([[t], [t], [f], [t], [t], [t]])
    assert [c[0] for c in costs] == [1, 1, 1, 1, 1, 2]
