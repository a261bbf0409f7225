"""Per-process worker state: the device and a small cache of loaded models.

Nothing here runs at import time. Celery's prefork pool imports this module in the parent and forks the
children; the device is chosen (and CUDA initialised) on first use inside a child, because a CUDA
context does not survive a fork.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from worker.audit import resolve_device
from worker.loading.loader import load_checkpoint
from worker.loading.types import CheckpointError, LoadedModel, ModelSpec

_device: torch.device | None = None
_models: OrderedDict[tuple[str, ModelSpec, str], LoadedModel] = OrderedDict()


def device(setting: str = "auto") -> torch.device:
    """The device this process audits on: ``setting`` ("auto", "cpu", "cuda", "cuda:1"), chosen once."""
    global _device
    if _device is None:
        _device = resolve_device(setting)
    return _device


def spec_from_dict(spec: dict[str, Any]) -> ModelSpec:
    """A ModelSpec from the JSON the API stores and sends (lists become the tuples ModelSpec holds)."""

    def as_tuple(value: Any) -> tuple[Any, ...] | None:
        return tuple(value) if value is not None else None

    shape = as_tuple(spec.get("input_shape"))
    return ModelSpec(
        input_shape=shape,  # validated to three ints by the API
        num_classes=spec.get("num_classes"),
        arch=spec.get("arch"),
        mean=as_tuple(spec.get("mean")),
        std=as_tuple(spec.get("std")),
        class_names=as_tuple(spec.get("class_names")),
    )


def get_model(
    path: Path, spec: ModelSpec, sha256: str, *, max_bytes: int, on: torch.device, cache_size: int = 2
) -> LoadedModel:
    """Load a checkpoint, or reuse it when this process loaded the same bytes and spec recently.

    Class groups of one audit (and concurrent audits of one model) land on the same worker often, so a
    small LRU saves reloading; the key includes the sha256, so a changed file is never served stale.
    """
    key = (sha256, spec, str(on))
    if key in _models:
        _models.move_to_end(key)
        return _models[key]
    loaded = load_checkpoint(path, spec, max_bytes=max_bytes, device=on)
    if loaded.sha256 != sha256:
        raise CheckpointError(
            f"the stored checkpoint no longer matches its sha256 {sha256[:12]}...; upload the model again"
        )
    _models[key] = loaded
    while len(_models) > cache_size:
        _models.popitem(last=False)
    return loaded


def check_upload(path: Path, spec: dict[str, Any], *, max_bytes: int) -> dict[str, Any]:
    """Run full intake on an uploaded file on the CPU; the outcome is JSON for the API (or a task result).

    ``{"ok": True, "facts": {format, num_classes, input_shape, arch, class_names}}`` or
    ``{"ok": False, "error": <message for the user>}``. Loading (not just inspecting) catches strict key
    mismatches and bad declared shapes at upload, instead of minutes later in an audit.
    """
    try:
        loaded = load_checkpoint(path, spec_from_dict(spec), max_bytes=max_bytes, device=torch.device("cpu"))
    except CheckpointError as exc:
        return {"ok": False, "error": str(exc)}
    return {
        "ok": True,
        "facts": {
            "format": loaded.format,
            "num_classes": loaded.num_classes,
            "input_shape": list(loaded.input_shape),
            "arch": loaded.arch,
            "class_names": list(loaded.class_names) if loaded.class_names else None,
        },
    }
