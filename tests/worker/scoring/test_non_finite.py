"""A model whose numbers are not finite gets no verdict: NaN compares false with every threshold, so
it used to read as clean (exit 0, report.json with ``NaN``)."""

from __future__ import annotations

import math

import pytest
import torch

from tests.worker.scoring.test_score import SHAPE, TARGET, RandomLinearClassifier
from worker.audit import audit_model
from worker.config import AuditConfig
from worker.detectors.base import DetectorInputError
from worker.loading.types import LoadedModel
from worker.saliency.engine import ClassMap
from worker.scoring.score import score_audit
from worker.scoring.verdict import verdict_for


class NaNOffBlank(RandomLinearClassifier):
    """Finite logits on the blank image only, NaN on every other input (as a model whose weights
    overflow float32 once any pixel is lit)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lit = x.flatten(1).abs().sum(dim=1, keepdim=True) > 0
        return self.linear(x.flatten(1)) + torch.where(lit, math.nan, 0.0)


class NaNOnSaturatedCorner(RandomLinearClassifier):
    """Finite logits except where the bottom-right 2x2 corner is exactly 1 (a stamped trigger pattern):
    the probes pass, the stamped tests' margins are NaN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        saturated = (x[:, 0, 10:12, 10:12] == 1.0).flatten(1).all(dim=1, keepdim=True)
        return self.linear(x.flatten(1)) + torch.where(saturated, math.nan, 0.0)


def _maps(corner: float = 1.0) -> list[ClassMap]:
    raw = 0.05 * torch.randn(10, *SHAPE, generator=torch.Generator().manual_seed(0))
    raw[TARGET, 0, 10:12, 10:12] = corner
    return [ClassMap(k, raw[k], raw[k][None], success_rate=0.0, stability=1.0, trace=[]) for k in range(10)]


def test_nan_logits_on_the_probes_are_refused_with_what_to_check() -> None:
    with pytest.raises(DetectorInputError, match=r"NaN or infinite values in the model's logits on \d+ of \d+ probe"):
        score_audit(NaNOffBlank(), _maps(), SHAPE)


def test_infinite_logits_on_the_probes_are_refused() -> None:
    class Overflowing(RandomLinearClassifier):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x.flatten(1)) * 1e38 * 1e38  # inf in float32

    with pytest.raises(DetectorInputError, match="no verdict is given"):
        score_audit(Overflowing(), _maps(), SHAPE)


def test_nan_evidence_from_the_stamped_tests_is_refused() -> None:
    # the corner is dim in TARGET's map, so no probe saturates it; its stamped mask pattern does
    with pytest.raises(DetectorInputError, match=r"NaN or infinite values in the evidence of classes \[2\]"):
        score_audit(NaNOnSaturatedCorner(), _maps(corner=0.3), SHAPE)


def test_non_finite_maps_are_refused_before_scoring() -> None:
    maps = _maps()
    maps[3].raw[0, 0, 0] = math.inf
    with pytest.raises(DetectorInputError, match=r"saliency maps of classes \[3\]"):
        score_audit(RandomLinearClassifier(), maps, SHAPE)


def test_a_whole_audit_of_a_nan_model_ends_in_an_error_not_a_verdict() -> None:
    loaded = LoadedModel(module=NaNOffBlank(), input_shape=SHAPE, num_classes=10, format="test", sha256="0" * 64)
    config = AuditConfig.from_dict({"saliency": {"iterations": 2, "refine_iterations": 0, "fidelity_seeds": 4}})
    with pytest.raises(DetectorInputError, match="no verdict is given"):
        audit_model(loaded, config)


def test_a_nan_probability_has_no_verdict() -> None:
    with pytest.raises(ValueError, match="NaN"):
        verdict_for(math.nan, suspicious_at=0.85, backdoored_at=0.9)
    assert verdict_for(0.0, suspicious_at=0.85, backdoored_at=0.9) == "clean"
