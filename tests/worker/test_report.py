"""report.json's thresholds: the verdict's lines from the config, and the anomaly index's reference line,
which no longer comes from a setting that decided nothing (``scoring.anomaly_threshold``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from worker.config import AuditConfig
from worker.loading.types import LoadedModel
from worker.report import build_report
from worker.saliency.engine import ClassMap
from worker.scoring.config import ScoringConfig
from worker.scoring.score import AuditScore, ClassScore, TriggerEstimate


def _report(config: AuditConfig) -> dict:
    loaded = LoadedModel(module=nn.Identity(), input_shape=(1, 4, 4), num_classes=2, format="test", sha256="0" * 64)
    maps = [ClassMap(k, torch.zeros(1, 4, 4), torch.zeros(1, 1, 4, 4), 0.0, 1.0, []) for k in range(2)]
    trigger = TriggerEstimate(bbox=(0, 0, 2, 2), mask=torch.zeros(4, 4), pattern=torch.zeros(1, 4, 4))
    classes = [
        ClassScore(k, score=0.0, anomaly_index=0.0, success_rate=0.0, stability=1.0, features={}, trigger=trigger)
        for k in range(2)
    ]
    score = AuditScore(verdict="clean", probability=0.1, suspected_classes=[], classes=classes)
    return build_report(loaded=loaded, maps=maps, score=score, config=config, seconds=1.0, device="cpu")


def test_thresholds_carry_the_verdicts_lines_and_the_anomaly_indexs_reference_line() -> None:
    config = AuditConfig.from_dict({"scoring": {"suspicious_at": 0.6, "backdoored_at": 0.7}})
    report = _report(config)
    assert report["thresholds"] == {"anomaly_index": 2.0, "suspicious": 0.6, "backdoored": 0.7}
    assert "anomaly_threshold" not in report["config"]["scoring"]


def test_the_retired_anomaly_threshold_is_read_back_from_stored_configs_and_refused_as_a_setting() -> None:
    stored = AuditConfig().to_dict()
    stored["scoring"]["anomaly_threshold"] = 2.0  # every config the API stored before carries it
    assert AuditConfig.from_dict(stored) == AuditConfig()
    with pytest.raises(ValueError, match=r"anomaly_threshold was removed \(got 3\).*suspicious_at"):
        ScoringConfig.from_dict({"anomaly_threshold": 3})
    with pytest.raises(TypeError):
        ScoringConfig(anomaly_threshold=3.0)  # type: ignore[call-arg]
