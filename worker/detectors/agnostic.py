"""Our method behind the common detector interface: input-agnostic class maps + trigger-signature scoring."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from worker.config import AuditConfig
from worker.detectors.base import Detection, register
from worker.saliency.engine import compute_class_maps
from worker.scoring.score import score_audit


@register("agnostic")
class AgnosticDetector:
    """``config`` is an audit config dict (``{"saliency": {...}, "scoring": {...}}``); defaults otherwise."""

    name = "agnostic"
    requires_clean_images: ClassVar[bool] = False

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = AuditConfig.from_dict(config)

    def detect(
        self,
        model: nn.Module,
        input_shape: tuple[int, int, int],
        num_classes: int,
        *,
        device: str | torch.device = "cpu",
        clean_images: Tensor | None = None,
        seed: int = 0,
    ) -> Detection:
        started = time.perf_counter()
        saliency = replace(self.config.saliency, seed=seed)
        maps = compute_class_maps(model, input_shape, num_classes, saliency, device=device)
        # clean images are deliberately not used: the benchmark measures the data-free method
        score = score_audit(model, maps, input_shape, config=self.config.scoring, device=device)
        return Detection(
            method=self.name,
            probability=score.probability,
            verdict=score.verdict,
            suspected_classes=[c.class_index for c in sorted(score.classes, key=lambda c: -c.score)],
            class_scores=[c.score for c in score.classes],
            seconds=time.perf_counter() - started,
            details={
                "suspected_classes": score.suspected_classes,
                "features": [c.features for c in score.classes],
                "anomaly_index": [c.anomaly_index for c in score.classes],
                "trigger_bbox": [list(c.trigger.bbox) for c in score.classes],
            },
        )
