"""Persist a ClassMap between Celery tasks: tensors in safetensors (no pickle), scalars in its metadata."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from worker.files import replacing
from worker.saliency.engine import ClassMap


def save_class_map(path: str | Path, class_map: ClassMap) -> None:
    """Write atomically (temp file + rename), so a killed worker never leaves a half-written map."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "class_index": str(class_map.class_index),
        "success_rate": repr(class_map.success_rate),
        "stability": repr(class_map.stability),
        "trace": json.dumps(class_map.trace),
    }
    with replacing(path) as tmp:
        save_file({"raw": class_map.raw.contiguous(), "restarts": class_map.restarts.contiguous()}, str(tmp), metadata)


def load_class_map(path: str | Path) -> ClassMap:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    return ClassMap(
        class_index=int(metadata["class_index"]),
        raw=tensors["raw"],
        restarts=tensors["restarts"],
        success_rate=float(metadata["success_rate"]),
        stability=float(metadata["stability"]),
        trace=[float(v) for v in json.loads(metadata["trace"])],
    )
