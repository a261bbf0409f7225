"""What a loaded checkpoint looks like to the rest of the worker."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn


class CheckpointError(ValueError):
    """A checkpoint was refused. The message says what was wrong and what to do; it is shown to users as-is."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything a user declares (or a format records) about a checkpoint besides its weights."""

    input_shape: tuple[int, int, int] | None = None  # (C, H, W)
    num_classes: int | None = None
    arch: str | None = None
    mean: tuple[float, ...] | None = None  # None: the model takes pixels in [0, 1]
    std: tuple[float, ...] | None = None
    class_names: tuple[str, ...] | None = None


@dataclass
class LoadedModel:
    """A classifier ready to audit: ``module`` takes pixels in [0, 1] and returns logits.

    Normalisation declared by the user is folded into ``module``, so saliency maps live in pixel space.
    """

    module: nn.Module
    input_shape: tuple[int, int, int]
    num_classes: int
    format: str  # "safetensors" | "state_dict" | "torchscript" | "export" | "onnx"
    sha256: str
    arch: str | None = None
    class_names: tuple[str, ...] | None = None
    notes: list[str] = field(default_factory=list)
