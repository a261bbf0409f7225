"""From a bag of weights to a registered architecture: unwrap, rename, infer sizes, load strictly.

Training scripts save more than ``model.state_dict()``: ``{"state_dict": ..., "optimizer": ...}``,
Lightning's ``model.`` prefix, DataParallel's ``module.``, torch.compile's ``_orig_mod.``. Those are
undone here. The class count and input channels are read off the weights by building the architecture
twice on the meta device (free) with different sizes and seeing which weight dimensions move.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from worker.loading import registry
from worker.loading.messages import listing
from worker.loading.types import CheckpointError

StateDict = dict[str, torch.Tensor]

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module", "ema", "state_dict_ema")
_PREFIXES = ("module.", "model.", "_orig_mod.", "net.")


@dataclass
class Weights:
    """A state_dict after unwrapping and renaming, with the notes that explain what was done."""

    tensors: StateDict
    notes: list[str]


def unwrap(obj: object) -> Weights:
    """Find the state_dict inside whatever torch.load returned."""
    if _is_state_dict(obj):
        return Weights(dict(obj), [])  # type: ignore[call-overload]
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if _is_state_dict(obj.get(key)):
                return Weights(dict(obj[key]), [f"weights taken from the checkpoint's `{key}` entry"])
        raise CheckpointError(
            f"the checkpoint is a dict ({listing([repr(k) for k in obj])}) but none of its "
            f"entries is a state_dict (looked for {', '.join(_WRAPPER_KEYS)}). Save `model.state_dict()`."
        )
    raise CheckpointError(
        f"the checkpoint holds a {type(obj).__name__}, not a state_dict (a mapping of names to tensors). "
        "Save it with `torch.save(model.state_dict(), path)`."
    )


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def match_names(weights: Weights, expected: set[str]) -> Weights:
    """Strip wrapper prefixes (``module.`` ...) while that makes more names match the architecture."""
    tensors, notes = weights.tensors, list(weights.notes)
    while True:
        best = len(expected & set(tensors))
        for prefix in _PREFIXES:
            stripped = {k.removeprefix(prefix): v for k, v in tensors.items()}
            if len(expected & set(stripped)) > best:
                tensors, best = stripped, len(expected & set(stripped))
                notes.append(f"removed the `{prefix}` prefix from weight names")
                break
        else:
            return Weights(tensors, notes)


def _meta_shapes(arch: str, num_classes: int, in_channels: int) -> dict[str, torch.Size]:
    """Weight shapes without allocating weights; constructors that read their own tensors (torchvision's
    RegNets) cannot run on the meta device and are built for real instead."""
    try:
        with torch.device("meta"):
            model = registry.build(arch, num_classes=num_classes, in_channels=in_channels)
    except NotImplementedError:
        model = registry.build(arch, num_classes=num_classes, in_channels=in_channels)
    return {k: v.shape for k, v in model.state_dict().items()}


def expected_names(arch: str) -> set[str]:
    return set(_meta_shapes(arch, 10, 3))


def infer_sizes(arch: str, tensors: StateDict) -> tuple[int | None, int | None]:
    """(num_classes, in_channels) as the weights record them; None where no weight depends on it."""
    base = _meta_shapes(arch, 7, 3)
    return (
        _moving_dim(base, _meta_shapes(arch, 11, 3), tensors, 7),
        _moving_dim(base, _meta_shapes(arch, 7, 1), tensors, 3),
    )


def _moving_dim(
    base: dict[str, torch.Size], changed: dict[str, torch.Size], tensors: StateDict, base_value: int
) -> int | None:
    for name, shape in base.items():
        other = changed.get(name)
        if other is None or other == shape or name not in tensors or tensors[name].dim() != len(shape):
            continue
        for dim, (a, b) in enumerate(zip(shape, other, strict=True)):
            if a != b and a == base_value:
                return int(tensors[name].shape[dim])
    return None


def load_into(model: nn.Module, weights: Weights, arch: str) -> list[str]:
    """Strict load with a readable report; returns notes. BatchNorm's step counters may be absent."""
    own = model.state_dict()
    tensors = dict(weights.tensors)
    notes: list[str] = []
    filled = [k for k in own if k not in tensors and k.endswith("num_batches_tracked")]
    for key in filled:
        tensors[key] = own[key]
    if filled:
        notes.append(f"{len(filled)} BatchNorm `num_batches_tracked` counters were absent (unused at audit)")
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    wrong_shape = [
        f"{k} {list(tensors[k].shape)} (expected {list(own[k].shape)})"
        for k in own
        if k in tensors and tensors[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong_shape:
        raise CheckpointError(_mismatch_report(arch, missing, unexpected, wrong_shape, len(own)))
    model.load_state_dict(tensors, strict=True)
    return notes


def _labelled(label: str, items: Sequence[str]) -> str:
    return f"{len(items)} {label} ({listing(items)})"


def _mismatch_report(
    arch: str, missing: list[str], unexpected: list[str], wrong_shape: list[str], expected: int
) -> str:
    parts = [
        _labelled(label, items)
        for label, items in (
            ("missing weights", missing),
            ("unexpected weights", unexpected),
            ("weights with the wrong shape", wrong_shape),
        )
        if items
    ]
    matched = expected - len(missing) - len(wrong_shape)
    if matched < expected // 2:
        cause = (
            f"the weights look like a different architecture than {arch!r}; check --arch against the "
            "training code (`backdoor-audit archs` lists the choices)"
        )
    elif unexpected and not missing:
        cause = "the file holds extra tensors (e.g. an EMA copy or auxiliary heads); save only model.state_dict()"
    elif wrong_shape:
        cause = "a layer has a different size: check --num-classes and the input channels"
    else:
        cause = f"the checkpoint was saved from a modified {arch!r}; check the training code's layer names"
    return f"the weights do not fit architecture {arch!r}: {'; '.join(parts)}. Likely cause: {cause}."
