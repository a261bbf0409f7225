"""The detector interface: result validation and the registry."""

from __future__ import annotations

import pytest

from worker.detectors import base
from worker.detectors.base import Detection, available, get_detector, register
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
