"""Synthetic report.json dicts and tiny PNGs in the shape ``worker.report`` produces."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

ReportFactory = Callable[..., tuple[dict[str, Any], dict[str, bytes]]]


def tiny_png(shade: int, size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (size, size), color=shade).save(buffer, format="PNG")
    return buffer.getvalue()


def make_report(
    num_classes: int = 10,
    suspected: tuple[int, ...] = (3,),
    verdict: str = "backdoored",
    probability: float = 0.93,
    class_names: list[str] | None = None,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    images: dict[str, bytes] = {}
    classes = []
    for k in range(num_classes):
        is_suspect = k in suspected
        map_file, heatmap_file = f"class_{k:04d}_map.png", f"class_{k:04d}_heatmap.png"
        images[map_file] = tiny_png(k % 256)
        images[heatmap_file] = tiny_png(255 - k % 256)
        trigger_file = None
        if is_suspect:
            trigger_file = f"class_{k:04d}_trigger.png"
            images[trigger_file] = tiny_png(200, size=4)
        classes.append(
            {
                "class_index": k,
                "class_name": class_names[k] if class_names else None,
                "score": 0.9 if is_suspect else 0.1 + (k % 7) / 100,
                "anomaly_index": 4.5 if is_suspect else 0.2 + (k % 5) / 10,
                "success_rate": 1.0,
                "stability": 0.8,
                "suspected": is_suspect,
                "features": {"hotspot_energy": 0.7 if is_suspect else 0.1, "concentration": 0.5},
                "trigger_bbox": [20, 21, 25, 26] if is_suspect else None,
                "map_file": map_file,
                "heatmap_file": heatmap_file,
                "trigger_file": trigger_file,
            }
        )
    report = {
        "schema_version": 1,
        "tool": {"name": "backdoor-audit", "version": "0.1.0"},
        "verdict": verdict,
        "probability": probability,
        "suspected_classes": list(suspected),
        "model": {
            "sha256": "ab" * 32,
            "format": "safetensors",
            "num_classes": num_classes,
            "input_shape": [1, 28, 28],
            "arch": "small_cnn",
            "class_names": class_names,
        },
        "classes": classes,
        "thresholds": {"anomaly_index": 2.0, "suspicious": 0.5, "backdoored": 0.8},
        "config": {"saliency": {"iterations": 20}, "scoring": {}},
        "seconds": 12.3,
        "device": "cpu",
        "created_at": "2026-11-26T07:00:00Z",
    }
    return report, images


@pytest.fixture
def report_factory() -> ReportFactory:
    return make_report
