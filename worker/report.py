"""The report.json contract and the map images that travel with it.

Other tools (the API, CI gates, dashboards, SARIF export) read this JSON; keep its fields stable and add
freely. ``schema_version`` changes only when a field changes meaning or disappears.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app import __version__
from worker.config import AuditConfig
from worker.detectors.base import Detection
from worker.loading.types import LoadedModel
from worker.saliency.engine import ClassMap
from worker.saliency.render import heatmap, png_bytes, signed_visualisation
from worker.scoring.borderline import near_the_line
from worker.scoring.score import AuditScore
from worker.scoring.verdict import MAD_OUTLIER_INDEX

SCHEMA_VERSION = 1


def map_file(class_index: int) -> str:
    return f"class_{class_index:04d}_map.png"


def heatmap_file(class_index: int) -> str:
    return f"class_{class_index:04d}_heatmap.png"


def trigger_file(class_index: int) -> str:
    return f"class_{class_index:04d}_trigger.png"


def _image_scale(height: int) -> int:
    """Upscale small inputs so a 28x28 map is readable in a report (nearest neighbour keeps pixels honest)."""
    return max(1, 112 // max(1, height))


def render_images(maps: list[ClassMap], score: AuditScore) -> dict[str, bytes]:
    """PNG files for every class (signed map and heatmap) and a trigger crop for each suspected class."""
    images: dict[str, bytes] = {}
    suspected = set(score.suspected_classes)
    for class_map in maps:
        scale = _image_scale(class_map.raw.shape[-2])
        k = class_map.class_index
        images[map_file(k)] = png_bytes(signed_visualisation(class_map.raw), scale=scale)
        images[heatmap_file(k)] = png_bytes(heatmap(class_map.raw), colour_map=True, scale=scale)
        if k in suspected:
            trigger = score.classes[k].trigger
            x0, y0, x1, y1 = trigger.bbox
            crop = trigger.pattern[:, y0:y1, x0:x1]
            images[trigger_file(k)] = png_bytes(crop, scale=max(8, 64 // max(1, y1 - y0)))
    return images


def build_report(
    *,
    loaded: LoadedModel,
    maps: list[ClassMap],
    score: AuditScore,
    config: AuditConfig,
    seconds: float,
    device: str,
) -> dict[str, Any]:
    names = loaded.class_names
    classes = []
    for class_score in score.classes:
        k = class_score.class_index
        classes.append(
            {
                "class_index": k,
                "class_name": names[k] if names else None,
                "score": class_score.score,
                "anomaly_index": class_score.anomaly_index,
                "success_rate": class_score.success_rate,
                "stability": class_score.stability,
                "suspected": class_score.suspected,
                "features": class_score.features,
                "trigger_bbox": list(class_score.trigger.bbox),
                "map_file": map_file(k),
                "heatmap_file": heatmap_file(k),
                "trigger_file": trigger_file(k) if class_score.suspected else None,
            }
        )
    return _envelope(
        loaded=loaded,
        method="agnostic",
        verdict=score.verdict,
        probability=score.probability,
        borderline=near_the_line(score.probability, config.scoring.suspicious_at),
        suspected_classes=score.suspected_classes,
        classes=classes,
        thresholds={
            # a reference line for the per-class anomaly index (of the maps' concentration), which is
            # reported, not decided on: the verdict is P(backdoored) against the two lines below
            "anomaly_index": MAD_OUTLIER_INDEX,
            "suspicious": config.scoring.suspicious_at,
            "backdoored": config.scoring.backdoored_at,
        },
        config=config.to_dict(),
        seconds=seconds,
        device=device,
    )


def build_detection_report(*, loaded: LoadedModel, detection: Detection, seconds: float, device: str) -> dict[str, Any]:
    """The same contract for a baseline detector (``scan --method mmbd|neural-cleanse``): no maps, so
    the per-class entries carry the detector's own suspicion score and no images or trigger box."""
    names = loaded.class_names
    suspected = detection.suspected_classes[:1] if detection.verdict != "clean" else []
    classes: list[dict[str, Any]] = [
        {
            "class_index": k,
            "class_name": names[k] if names else None,
            "score": score,
            "anomaly_index": None,
            "success_rate": None,
            "stability": None,
            "suspected": k in suspected,
            "features": {},
            "trigger_bbox": None,
            "map_file": None,
            "heatmap_file": None,
            "trigger_file": None,
        }
        for k, score in enumerate(detection.class_scores)
    ]
    return _envelope(
        loaded=loaded,
        method=detection.method,
        verdict=detection.verdict,
        probability=detection.probability,
        borderline=None,  # the seed spread was measured for our detector's evidence only
        suspected_classes=suspected,
        classes=classes,
        thresholds={},
        config={"method": detection.method, "details": detection.details},
        seconds=seconds,
        device=device,
    )


def _envelope(
    *,
    loaded: LoadedModel,
    method: str,
    verdict: str,
    probability: float,
    borderline: bool | None,
    suspected_classes: list[int],
    classes: list[dict[str, Any]],
    thresholds: dict[str, float],
    config: dict[str, Any],
    seconds: float,
    device: str,
) -> dict[str, Any]:
    names = loaded.class_names
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "backdoor-audit", "version": __version__},
        "method": method,
        "verdict": verdict,
        "probability": probability,
        "borderline": borderline,
        "suspected_classes": suspected_classes,
        "model": {
            "sha256": loaded.sha256,
            "format": loaded.format,
            "num_classes": loaded.num_classes,
            "input_shape": list(loaded.input_shape),
            "arch": loaded.arch,
            "class_names": list(names) if names else None,
        },
        "classes": classes,
        "thresholds": thresholds,
        "config": config,
        "seconds": round(seconds, 3),
        "device": device,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
