"""The detector interface: result validation, the registry and leaving the model as found."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from worker.detectors import base
from worker.detectors.base import Detection, available, get_detector, model_as_found, register
from worker.scoring.verdict import verdict_for


def test_registry_lists_the_baselines_and_builds_them_with_options() -> None:
    assert {"mmbd", "neural-cleanse"} <= set(available())
    detector = get_detector("mmbd", steps=3)
    assert detector.name == "mmbd" and detector.steps == 3  # type: ignore[attr-defined]


def test_unknown_detector_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="mmbd"):
        get_detector("strip")


def test_duplicate_registration_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "_FACTORIES", dict(base._FACTORIES))
    with pytest.raises(ValueError, match="already registered"):
        register("mmbd")(object)  # type: ignore[arg-type]


def test_detection_rejects_impossible_values() -> None:
    with pytest.raises(ValueError, match="verdict"):
        Detection("m", 0.5, "maybe", [0], [0.0], 0.0)
    with pytest.raises(ValueError, match="probability"):
        Detection("m", 1.5, "clean", [0], [0.0], 0.0)


@pytest.mark.parametrize(("probability", "verdict"), [(0.2, "clean"), (0.5, "suspicious"), (0.95, "backdoored")])
def test_verdict_thresholds(probability: float, verdict: str) -> None:
    assert verdict_for(probability, suspicious_at=0.5, backdoored_at=0.9) == verdict


def test_model_as_found_restores_modes_and_requires_grad_per_module() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(), nn.Linear(2, 2))
    model.train()
    model[1].eval()
    model[2].weight.requires_grad_(False)
    with model_as_found(model):
        assert not any(m.training for m in model.modules())
        assert not any(p.requires_grad for p in model.parameters())
        model(torch.rand(1, 2, requires_grad=True)).sum().backward()
    assert [m.training for m in model] == [True, False, True]
    assert [p.requires_grad for p in model.parameters()] == [True, True, False, True]
    assert all(p.grad is None for p in model.parameters())
