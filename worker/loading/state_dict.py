"""From a bag of weights to a registered architecture: unwrap, rename, infer sizes, load strictly.

Training scripts save more than ``model.state_dict()``: ``{"state_dict": ..., "optimizer": ...}``,
Lightning's ``model.`` prefix, DataParallel's ``module.``, torch.compile's ``_orig_mod.``. Those are
undone here. The class count and input channels are read off the weights by building the architecture
twice on the meta device (free) with different sizes and seeing which weight dimensions move. A weight
can claim any size without holding the values (a (20_000_000, 0) tensor takes no bytes), so the sizes
read are bounded (limits) and the weights are checked against a meta-device build of those sizes
(check_fit) before the caller builds the model for real.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from worker.loading import registry
from worker.loading.limits import MAX_INPUT_CHANNELS, MAX_NUM_CLASSES, in_channels_in_bounds, num_classes_in_bounds
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


def meta_shapes(arch: str, num_classes: int, in_channels: int) -> dict[str, torch.Size]:
    """Weight shapes without allocating weights; constructors that read their own tensors (torchvision's
    RegNets) cannot run on the meta device and are built for real instead."""
    try:
        with torch.device("meta"):
            model = registry.build(arch, num_classes=num_classes, in_channels=in_channels)
    except NotImplementedError:
        model = registry.build(arch, num_classes=num_classes, in_channels=in_channels)
    return {k: v.shape for k, v in model.state_dict().items()}


def expected_names(arch: str) -> set[str]:
    return set(meta_shapes(arch, 10, 3))


def infer_sizes(arch: str, tensors: StateDict) -> tuple[int | None, int | None]:
    """(num_classes, in_channels) as the weights record them; None where no weight depends on it.

    Refuses sizes past the accepted bounds: the caller builds the model at these sizes.
    """
    base = meta_shapes(arch, 7, 3)
    num_classes = _moving_dim(base, meta_shapes(arch, 11, 3), tensors, 7)
    in_channels = _moving_dim(base, meta_shapes(arch, 7, 1), tensors, 3)
    if num_classes is not None and not num_classes_in_bounds(num_classes[0]):
        raise _size_error(tensors, num_classes, "classes", f"between 1 and {MAX_NUM_CLASSES}")
    if in_channels is not None and not in_channels_in_bounds(in_channels[0]):
        raise _size_error(tensors, in_channels, "input channels", f"between 1 and {MAX_INPUT_CHANNELS}")
    return (
        None if num_classes is None else num_classes[0],
        None if in_channels is None else in_channels[0],
    )


def _moving_dim(
    base: dict[str, torch.Size], changed: dict[str, torch.Size], tensors: StateDict, base_value: int
) -> tuple[int, str] | None:
    """The size the weights give to the dimension that follows ``base_value``, and the weight it was read off."""
    for name, shape in base.items():
        other = changed.get(name)
        if other is None or other == shape or name not in tensors or tensors[name].dim() != len(shape):
            continue
        for dim, (a, b) in enumerate(zip(shape, other, strict=True)):
            if a != b and a == base_value:
                return int(tensors[name].shape[dim]), name
    return None


def _size_error(tensors: StateDict, found: tuple[int, str], what: str, accepted: str) -> CheckpointError:
    size, name = found
    empty = " and holds no values," if tensors[name].numel() == 0 else ""
    return CheckpointError(
        f"weight `{name}` has shape {list(tensors[name].shape)}{empty} which makes {size} {what}; {accepted} "
        "are accepted. The file is corrupt or tampered, or not a classifier of that size: re-save "
        "`model.state_dict()` of the trained model."
    )


def check_fit(arch: str, expected: Mapping[str, torch.Size], tensors: StateDict) -> None:
    """Refuse, with a readable report, unless ``tensors`` has the names and shapes of ``expected``.

    Shapes only, so ``expected`` can come from a meta-device build and a misfit is reported before the
    model is allocated. BatchNorm's step counters may be absent (load_into fills them).
    """
    missing = [k for k in expected if k not in tensors and not _is_step_counter(k)]
    unexpected = [k for k in tensors if k not in expected]
    wrong_shape = [
        f"{k} {list(tensors[k].shape)} (expected {list(expected[k])})"
        for k in expected
        if k in tensors and tensors[k].shape != expected[k]
    ]
    if missing or unexpected or wrong_shape:
        raise CheckpointError(_mismatch_report(arch, missing, unexpected, wrong_shape, len(expected)))


def load_into(model: nn.Module, weights: Weights, arch: str) -> list[str]:
    """Strict load; returns notes. BatchNorm's step counters may be absent. The caller checked the fit
    (``check_fit`` on the meta-device shapes of the same architecture and sizes) before building
    ``model``, which is where a misfit gets its readable report."""
    own = model.state_dict()
    filled = [k for k in own if k not in weights.tensors and _is_step_counter(k)]
    model.load_state_dict({**weights.tensors, **{k: own[k] for k in filled}}, strict=True)
    if filled:
        return [f"{len(filled)} BatchNorm `num_batches_tracked` counters were absent (unused at audit)"]
    return []


def _is_step_counter(name: str) -> bool:
    return name.endswith("num_batches_tracked")


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
