"""One whole audit in one process: maps for every class, then scoring. Used by ``scan`` and the
benchmark; the service runs the same two steps split across Celery tasks."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from worker.config import AuditConfig
from worker.loading.types import LoadedModel
from worker.saliency.engine import ClassMap, Progress, compute_class_maps
from worker.scoring.score import AuditScore, score_audit


@dataclass
class AuditOutcome:
    maps: list[ClassMap]
    score: AuditScore
    seconds: float


def audit_model(
    loaded: LoadedModel,
    config: AuditConfig | None = None,
    *,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    clean_images: torch.Tensor | None = None,
) -> AuditOutcome:
    config = config or AuditConfig()
    started = time.perf_counter()
    maps = compute_class_maps(
        loaded.module, loaded.input_shape, loaded.num_classes, config.saliency, device=device, progress=progress
    )
    score = score_audit(
        loaded.module, maps, loaded.input_shape, config=config.scoring, device=device, clean_images=clean_images
    )
    return AuditOutcome(maps=maps, score=score, seconds=time.perf_counter() - started)


def resolve_device(requested: str) -> torch.device:
    """``auto`` picks CUDA when present. A name torch does not know, CUDA on a machine without it, or a
    CUDA index past the machine's devices is a ValueError naming what to pass instead (the caller reports it)."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ValueError(f"--device {requested!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ValueError(
            f"--device {requested} was requested but no CUDA device is available; use --device cpu or auto"
        )
    if device.index is not None and device.index >= count:
        raise ValueError(
            f"--device {requested}: this machine has {count} CUDA device{'s' if count > 1 else ''} "
            f"(cuda:0 to cuda:{count - 1}); pass one of those, or cuda for the current one"
        )
    return device
