"""Scoring on models with a known answer: a planted differentiable trigger path versus none."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from worker.saliency.config import SaliencyConfig
from worker.saliency.engine import ClassMap, compute_class_maps
from worker.scoring.calibration import LEAD_CENTRES, LEAD_SLOPE, class_leads
from worker.scoring.config import ScoringConfig
from worker.scoring.features import best_windows, energy, shared_hotspot, window_size
from worker.scoring.score import score_audit
from worker.scoring.verdict import anomaly_index, backdoor_probability, median, verdict_for

SHAPE = (1, 12, 12)
TARGET = 2


class RandomLinearClassifier(nn.Module):
    """The clean part of every planted model: a seeded random linear classifier on 12x12 images."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.linear = nn.Linear(144, 10)


class PlantedTrigger(RandomLinearClassifier):
    """A random linear classifier plus a steep trigger path: a bright 2x2 patch at the bottom-right
    corner (x, y >= 10) adds a large logit to class TARGET, whatever the rest of the image is."""

    def __init__(self, with_trigger: bool) -> None:
        super().__init__()
        self.with_trigger = with_trigger

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.linear(x.flatten(1))
        if self.with_trigger:
            patch = x[:, 0, 10:12, 10:12].sum(dim=(1, 2))
            bump = 40 * torch.sigmoid(4 * (patch - 3.0))
            logits = logits + bump[:, None] * nn.functional.one_hot(torch.tensor(TARGET), 10)
        return logits


CONFIG = SaliencyConfig(iterations=60, refine_iterations=10, restarts=2, seeds_per_step=8, fidelity_seeds=32)


def audit(with_trigger: bool):
    model = PlantedTrigger(with_trigger)
    maps = compute_class_maps(model, SHAPE, 10, CONFIG)
    return score_audit(model, maps, SHAPE, config=ScoringConfig(window=0.2))


def test_planted_trigger_is_found_with_its_location() -> None:
    score = audit(with_trigger=True)
    assert score.verdict in {"suspicious", "backdoored"}, score.probability
    assert score.suspected_classes[0] == TARGET
    target = score.classes[TARGET]
    x0, y0, x1, y1 = target.trigger.bbox
    assert x0 <= 10 and y0 <= 10 and x1 == 12 and y1 == 12, target.trigger.bbox
    assert target.features["transfer_rate"] > 0.9
    assert target.anomaly_index > 2.0 and target.suspected


def test_a_gray_models_probability_reads_its_largest_lead_over_the_rivals() -> None:
    score = audit(with_trigger=True)
    evidence = [c.score for c in score.classes]
    leads = [c.features["lead"] for c in score.classes]
    assert leads == pytest.approx(class_leads(evidence, "gray"))
    rivals = sorted(evidence, reverse=True)[1:4]
    assert leads[TARGET] == pytest.approx(evidence[TARGET] - sum(rivals) / 3)
    centre = LEAD_CENTRES["gray"]
    assert score.probability == pytest.approx(backdoor_probability(max(leads), centre=centre, slope=LEAD_SLOPE))


def test_model_without_trigger_is_clean() -> None:
    score = audit(with_trigger=False)
    assert score.verdict == "clean", (score.probability, [c.score for c in score.classes])
    assert score.suspected_classes == [] and not any(c.suspected for c in score.classes)


def test_anomaly_index_matches_hand_computation() -> None:
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0])
    # median 3, absolute deviations [2, 1, 0, 1, 7] -> MAD 1
    assert anomaly_index(values)[-1].item() == pytest.approx(7 / 1.4826, rel=1e-5)
    assert anomaly_index(values)[2].item() == 0.0
    flat = anomaly_index(torch.tensor([1.0, 1.0, 1.0, 1.01]), floor=0.01)
    assert math.isfinite(flat[-1].item()) and flat[-1].item() == pytest.approx(0.01 / (1.4826 * 0.01))


def test_anomaly_index_takes_the_true_median_of_an_even_class_count() -> None:
    values = torch.tensor([8.0, 1.0, 20.0, 4.0, 2.0, 7.0])
    # median (4 + 7) / 2 = 5.5; deviations [2.5, 4.5, 14.5, 1.5, 3.5, 1.5] -> MAD (2.5 + 3.5) / 2 = 3.
    # torch.median's lower middles gave median 4 and MAD 3: an index of 16 / 4.4478 = 3.597 for 20
    index = anomaly_index(values)
    assert index.tolist() == pytest.approx([(v - 5.5) / (1.4826 * 3) for v in values.tolist()], rel=1e-6)
    assert index[2].item() == pytest.approx(14.5 / 4.4478, rel=1e-4)  # 3.260
    assert median(torch.tensor([3.0, 1.0])).item() == 2.0 and median(torch.tensor([5.0])).item() == 5.0


def test_best_window_and_shared_hotspot_find_a_planted_blob() -> None:
    maps = torch.randn(3, 1, 10, 10) * 0.01
    maps[0, 0, 6:9, 1:4] = 1.0  # class 0: bright 3x3 blob at x=1, y=6
    maps[1, 0, 6:9, 1:4] = -0.5  # class 1 carries a dark blob at the same spot
    pixel_energy = energy(maps)
    windows, share = best_windows(pixel_energy, 3)
    assert windows[0].bbox == (1, 6, 4, 9) and share[0] > 0.95
    hotspot = shared_hotspot(pixel_energy, windows)
    assert hotspot[0] > 0.4, "half the others' energy sits in class 0's window"
    assert window_size(28, 28, 0.15) == 4 and window_size(4, 4, 0.1) == 2


def test_verdict_thresholds() -> None:
    config = ScoringConfig(suspicious_at=0.5, backdoored_at=0.8)
    assert [
        verdict_for(p, suspicious_at=config.suspicious_at, backdoored_at=config.backdoored_at)
        for p in (0.1, 0.5, 0.79, 0.8)
    ] == [
        "clean",
        "suspicious",
        "suspicious",
        "backdoored",
    ]
    with pytest.raises(ValueError, match="suspicious_at"):
        ScoringConfig(suspicious_at=0.9, backdoored_at=0.8)


def test_scoring_leaves_the_model_as_found_and_needs_every_class() -> None:
    model = PlantedTrigger(with_trigger=True).train()
    maps = compute_class_maps(model, SHAPE, 10, SaliencyConfig(iterations=3, refine_iterations=0, restarts=1))
    score_audit(model, maps, SHAPE)
    assert model.training
    with pytest.raises(ValueError, match="one map per class"):
        score_audit(model, maps[1:], SHAPE)


def test_user_clean_images_join_the_transfer_probes() -> None:
    model = PlantedTrigger(with_trigger=True)
    maps = compute_class_maps(model, SHAPE, 10, CONFIG)
    # dark images: no seed-like texture, so only the stamped trigger can send them to TARGET
    clean = torch.rand(40, *SHAPE, generator=torch.Generator().manual_seed(5)) * 0.3
    score = score_audit(model, maps, SHAPE, config=ScoringConfig(window=0.2), clean_images=clean)
    assert score.suspected_classes[0] == TARGET
    assert score.classes[TARGET].features["transfer_rate"] > 0.9


class PlantedBlend(RandomLinearClassifier):
    """A random linear classifier plus a blended-trigger path: a faint whole-image pattern (a fixed
    +-1 checkerboard correlated with the input) adds a large logit to class TARGET. No small window
    carries it, and its strongest pixels, stamped, carry little of it; the whole map carries it all."""

    def __init__(self) -> None:
        super().__init__()
        rows, cols = torch.meshgrid(torch.arange(12), torch.arange(12), indexing="ij")
        self.register_buffer("pattern", ((rows + cols) % 2 * 2 - 1).float().flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        correlation = (x.flatten(1) - 0.5) @ self.pattern
        bump = 40 * torch.sigmoid(correlation - 4.0)
        return self.linear(x.flatten(1)) + bump[:, None] * nn.functional.one_hot(torch.tensor(TARGET), 10)


def test_blended_trigger_is_caught_by_the_map_margin_not_by_a_window_or_the_mask() -> None:
    model = PlantedBlend()
    maps = compute_class_maps(model, SHAPE, 10, CONFIG)
    score = score_audit(model, maps, SHAPE, config=ScoringConfig(window=0.2))
    assert score.verdict in {"suspicious", "backdoored"}, score.probability
    assert score.suspected_classes[0] == TARGET, [(c.class_index, round(c.score, 3)) for c in score.classes]
    target = score.classes[TARGET].features
    # the stamped top pixels alone would call this model clean; the whole map, added, flips the probes
    assert target["map_margin"] > target["mask_margin"] + 4.0, target
    weight = ScoringConfig().window_weight
    for c in score.classes:
        patch = (1 - weight) * c.features["mask_margin"] + weight * c.features["window_margin"]
        assert c.score == pytest.approx(max(patch, c.features["map_margin"]))
    others = [c.features["dominance"] for c in score.classes if c.class_index != TARGET]
    # the equal-norm maps of the linear classes compete with the trigger's, so not every probe flips
    assert target["dominance"] > 0.9 and target["dominance"] - max(others) > 0.1, (target["dominance"], others)
    assert target["transfer_rate"] < 0.5, "a 2x2 window of a whole-image pattern does not flip probes"


class PlantedScatteredTrigger(RandomLinearClassifier):
    """A trigger of six bright pixels spread over the image (as a strided stem's grid spreads a map):
    no window holds more than one of them, yet together they add a large logit to class TARGET."""

    PIXELS = ((1, 1), (1, 6), (1, 10), (10, 1), (10, 6), (10, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lit = sum(x[:, 0, y, x_] for y, x_ in self.PIXELS)
        bump = 40 * torch.sigmoid(4 * (lit - 5.0))
        return self.linear(x.flatten(1)) + bump[:, None] * nn.functional.one_hot(torch.tensor(TARGET), 10)


def test_scattered_trigger_is_found_by_the_mask_margin_not_by_a_window() -> None:
    model = PlantedScatteredTrigger()
    maps = compute_class_maps(model, SHAPE, 10, CONFIG)
    score = score_audit(model, maps, SHAPE, config=ScoringConfig(window=0.2))
    assert score.verdict in {"suspicious", "backdoored"}, score.probability
    assert score.suspected_classes[0] == TARGET
    target = score.classes[TARGET].features
    others = [c.features["mask_margin"] for c in score.classes if c.class_index != TARGET]
    assert target["mask_margin"] > max(others) + 2.0, (target["mask_margin"], others)
    assert target["transfer_rate"] < 0.5, "a 2x2 window holds one of the six pixels: it flips nothing"


class PlantedPatchAndSpreadClass(RandomLinearClassifier):
    """Two equally steep paths: a 2x2 patch (the trigger) adds a large logit to TARGET, and four bright
    pixels spread over the image (a natural class's strongest pixels, spread over its object) add one to
    SPREAD. Both masks override every probe; only the patch sits in one small window."""

    SPREAD = 5
    PIXELS = ((1, 1), (1, 10), (10, 1), (6, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patch = x[:, 0, 10:12, 10:12].sum(dim=(1, 2))
        spread = sum(x[:, 0, y, x_] for y, x_ in self.PIXELS)
        one_hot = nn.functional.one_hot(torch.tensor([TARGET, self.SPREAD]), 10).float()
        bumps = 40 * torch.sigmoid(4 * (torch.stack([patch, spread], dim=1) - 3.0))
        return self.linear(x.flatten(1)) + bumps @ one_hot


def test_the_window_margin_ranks_a_patch_above_a_spread_class_with_the_same_mask_margin() -> None:
    model = PlantedPatchAndSpreadClass()
    maps = compute_class_maps(model, SHAPE, 10, CONFIG)
    score = score_audit(model, maps, SHAPE, config=ScoringConfig(window=0.2))
    patch, spread = score.classes[TARGET].features, score.classes[model.SPREAD].features
    assert min(patch["mask_margin"], spread["mask_margin"]) > 5.0, (patch, spread)
    assert patch["window_margin"] > spread["window_margin"] + 5.0, (patch, spread)
    assert score.classes[TARGET].score > score.classes[model.SPREAD].score
    assert score.suspected_classes[0] == TARGET
    without = score_audit(model, maps, SHAPE, config=ScoringConfig(window=0.2, window_weight=0.0))
    assert without.classes[TARGET].score == max(patch["mask_margin"], patch["map_margin"])


class PlantedDarkSurroundTrigger(RandomLinearClassifier):
    """A trigger learned on dark-background images: a bright 2x2 corner patch adds a large logit to
    TARGET only while the pixels around it are dark, as on the zoo's Fashion-MNIST and digits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patch = x[:, 0, 10:12, 10:12].sum(dim=(1, 2))
        surround = (x[:, 0, 8:12, 8:12].sum(dim=(1, 2)) - patch) / 12
        bump = 40 * torch.sigmoid(4 * (patch - 3.0)) * torch.sigmoid(20 * (0.3 - surround))
        return self.linear(x.flatten(1)) + bump[:, None] * nn.functional.one_hot(torch.tensor(TARGET), 10)


def _hand_made_maps() -> list[ClassMap]:
    """Faint random maps, and TARGET's holding the bright patch."""
    raw = 0.05 * torch.randn(10, *SHAPE, generator=torch.Generator().manual_seed(0))
    raw[TARGET, 0, 10:12, 10:12] = 1.0
    return [ClassMap(k, raw[k], raw[k][None], success_rate=0.0, stability=1.0, trace=[]) for k in range(10)]


def test_dim_probes_let_a_trigger_that_needs_a_dark_surround_win_the_patch_tests() -> None:
    model, maps = PlantedDarkSurroundTrigger(), _hand_made_maps()
    bright = score_audit(model, maps, SHAPE, config=ScoringConfig(patch_probe_brightness=1.0)).classes[TARGET]
    dim = score_audit(model, maps, SHAPE, config=ScoringConfig(patch_probe_brightness=0.5)).classes[TARGET]
    # on probes as bright as uniform noise the stamped patch barely fires; on dim ones it overrides them
    assert bright.features["mask_margin"] < 3.0 < 8.0 < dim.features["mask_margin"], (bright.features, dim.features)
    assert dim.features["window_margin"] > 8.0
    # the map test keeps full-brightness probes
    assert dim.features["map_margin"] == bright.features["map_margin"]


def test_probe_brightness_must_be_a_fraction() -> None:
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="patch_probe_brightness"):
            ScoringConfig(patch_probe_brightness=bad)


def _maps_whose_restarts_disagree(stability: float) -> list[ClassMap]:
    """Faint random maps; TARGET's two restarts point apart: the first holds the bright corner patch,
    the second a brighter spot far from it, so their mean's strongest pixels are the spot's."""
    raw = 0.05 * torch.randn(10, *SHAPE, generator=torch.Generator().manual_seed(0))
    patch, spot = raw[TARGET].clone(), raw[TARGET].clone()
    patch[0, 10:12, 10:12] = 1.0
    spot[0, 0:3, 0:4] = 2.0
    restarts = torch.stack([patch, spot])
    maps = [ClassMap(k, raw[k], raw[k][None], success_rate=0.0, stability=1.0, trace=[]) for k in range(10)]
    maps[TARGET] = ClassMap(TARGET, restarts.mean(dim=0), restarts, success_rate=0.0, stability=stability, trace=[])
    return maps


def test_a_class_whose_restarts_disagree_keeps_its_best_restarts_evidence() -> None:
    model = PlantedDarkSurroundTrigger()
    split = _maps_whose_restarts_disagree(stability=0.2)
    rescued = score_audit(model, split, SHAPE).classes[TARGET]
    merged_only = score_audit(model, split, SHAPE, config=ScoringConfig(score_restarts_below=-1)).classes[TARGET]
    # the merged map's strongest pixels are the spot's: stamped, they do not fire the trigger
    assert merged_only.score < 3.0 < 8.0 < rescued.score, (merged_only.features, rescued.features)
    assert rescued.features["restart_evidence"] == rescued.score
    assert "restart_evidence" not in merged_only.features
    # the merged map's own tests are reported as they are
    assert rescued.features["mask_margin"] == merged_only.features["mask_margin"]
    # restarts that agree are not scored one by one
    agreeing = score_audit(model, _maps_whose_restarts_disagree(stability=0.9), SHAPE).classes[TARGET]
    assert agreeing.score == merged_only.score and "restart_evidence" not in agreeing.features


def test_the_restart_threshold_must_be_a_cosine() -> None:
    for bad in (-1.5, 1.01):
        with pytest.raises(ValueError, match="score_restarts_below"):
            ScoringConfig(score_restarts_below=bad)
