"""The interface every backdoor detector implements, and the registry that finds detectors by name.

Our method and the baselines (MM-BD, Neural Cleanse) answer the same question in the same shape, so
the benchmark and ``scan --method`` can run any of them side by side. A detector registers itself
with ``@register("name")`` in its own module; the registry imports the known detector modules on
first lookup, so a module added later (the lead's ``agnostic``) needs only to exist and register.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

VERDICTS = ("clean", "suspicious", "backdoored")

# Modules that register detectors when imported; one that does not exist (yet) is skipped.
DETECTOR_MODULES = ("worker.detectors.mmbd", "worker.detectors.neural_cleanse", "worker.detectors.agnostic")


@dataclass
class Detection:
    """One detector's answer about one model.

    ``probability`` is P(backdoored); ``verdict`` is the detector's decision at its default threshold
    ("clean" means not flagged); ``class_scores`` holds one suspicion value per class (higher = more
    suspicious) and ``suspected_classes`` the classes ranked by it, most suspicious first.
    """

    method: str
    probability: float
    verdict: str
    suspected_classes: list[int]
    class_scores: list[float]
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {self.probability}")


class Detector(Protocol):
    """Decides whether ``model`` (pixels in [0, 1] shaped ``(N, *input_shape)`` -> logits) is backdoored.

    The model must already be on ``device``; detectors leave it as found (mode, ``requires_grad``).
    ``clean_images`` (N, C, H, W) in [0, 1] is used by detectors that need data and ignored by others.
    """

    name: str
    requires_clean_images: ClassVar[bool]  # False: data-free, clean_images is optional or ignored

    def detect(
        self,
        model: nn.Module,
        input_shape: tuple[int, int, int],
        num_classes: int,
        *,
        device: str | torch.device = "cpu",
        clean_images: Tensor | None = None,
        seed: int = 0,
    ) -> Detection: ...


class DetectorInputError(ValueError):
    """A detector cannot run on what it was given; the message says what it needs."""


def non_finite_classes(per_class: Tensor, *, shown: int = 10) -> list[int]:
    """The first ``shown`` classes whose statistic is NaN or infinite (none: every one is finite). A
    detector refuses to give a verdict on such statistics: NaN compares false with every threshold."""
    return torch.nonzero(~torch.isfinite(per_class)).flatten()[:shown].tolist()


_FACTORIES: dict[str, Callable[..., Detector]] = {}
_modules_loaded = False


def register(name: str) -> Callable[[Callable[..., Detector]], Callable[..., Detector]]:
    """Class decorator: make ``name`` build this detector (keyword options go to its constructor)."""

    def decorate(factory: Callable[..., Detector]) -> Callable[..., Detector]:
        if name in _FACTORIES:
            raise ValueError(f"detector {name!r} is already registered")
        _FACTORIES[name] = factory
        return factory

    return decorate


def _load_detector_modules() -> None:
    global _modules_loaded
    if _modules_loaded:
        return
    _modules_loaded = True
    for module in DETECTOR_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a real missing dependency inside an existing module must surface
                raise


def available() -> list[str]:
    """Names of every registered detector, sorted."""
    _load_detector_modules()
    return sorted(_FACTORIES)


def get_detector(name: str, **options: Any) -> Detector:
    """A detector by registered name, built with ``options``; an unknown name lists the known ones."""
    _load_detector_modules()
    if name not in _FACTORIES:
        raise KeyError(f"unknown detector {name!r}; available: {', '.join(sorted(_FACTORIES)) or 'none'}")
    return _FACTORIES[name](**options)
