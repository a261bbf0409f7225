"""The checks every format ends with: finite weights, the input shape, normalisation, a dry run, and
the memory layout the model runs fastest in.

Whatever the format, the audit receives a module in eval mode on the requested device that takes
pixels in [0, 1] shaped (N, C, H, W) and returns (N, num_classes) logits, and a declared value that
contradicts the checkpoint is an error naming both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from worker.loading.limits import MAX_INPUT_CHANNELS, checked_input_shape, in_channels_in_bounds
from worker.loading.messages import first_line, listing
from worker.loading.types import CheckpointError, LoadedModel, ModelSpec

_TRIAL_SIZES = {1: (28, 32, 64, 224), 3: (32, 224, 64, 28)}
CHANNELS_LAST_MAX_SIDE = 32  # the largest input side a model runs channels-last at (_prefer_channels_last)


@dataclass
class Built:
    """A format loader's result before the common checks."""

    module: nn.Module
    format: str
    input_shape: tuple[int, int, int] | None  # as declared or recorded by the format; None: unknown
    arch: str | None = None
    in_channels: int | None = None  # a hint for trial shapes when the shape is unknown
    notes: list[str] = field(default_factory=list)


class PixelSpaceClassifier(nn.Module):
    """``net((x - mean) / std)``: folds the user's input normalisation into the model."""

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.net = net
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def finalize(built: Built, spec: ModelSpec, sha256: str, device: torch.device) -> LoadedModel:
    check_weights_stored(built.module)
    _check_finite(built.module)
    notes = list(built.notes)
    module = _normalised(built.module, spec)
    module.eval()
    module.to(device)
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    shape = _resolve_shape(built, spec)
    if shape is None:
        shape, logits = _trial_shape(module, built, device)
        notes.append(f"input shape {shape} found by trial; declare it if the model was trained on another size")
    else:
        logits = _dry_run(module, shape, device)
    num_classes = int(logits.shape[1])
    if spec.num_classes is not None and spec.num_classes != num_classes:
        raise CheckpointError(
            f"declared num_classes={spec.num_classes}, but the model returns {num_classes} logits; fix the "
            "declaration or upload the matching checkpoint."
        )
    if spec.class_names is not None and len(spec.class_names) != num_classes:
        raise CheckpointError(f"{len(spec.class_names)} class names were given for a model with {num_classes} classes.")
    if not torch.isfinite(logits).all():
        raise CheckpointError("the model returns NaN or infinite logits on a blank input; it cannot be audited.")
    _prefer_channels_last(module, shape, device)
    return LoadedModel(
        module=module,
        input_shape=shape,
        num_classes=num_classes,
        format=built.format,
        sha256=sha256,
        arch=built.arch,
        class_names=spec.class_names,
        notes=notes,
    )


def _prefer_channels_last(module: nn.Module, shape: tuple[int, int, int], device: torch.device) -> None:
    """Run a convolutional model on small inputs in the channels-last layout on the CPU, if it computes
    the same logits so.

    On inputs of at most 32 x 32 pixels oneDNN's pooling and narrow or grouped convolutions run faster
    on channels-last tensors: a forward pass and its input gradient took 1.04-2.6 times less time on
    11 of 13 architectures (small_cnn, lenet5, mobilenets, shufflenet, efficientnet, densenet, ...)
    and 7% more on resnet18 and vgg11_bn. On larger inputs resnet18 lost 18-29% at 48-64 px and
    most gains fade (``bench/layout_speed.py``; bench/MEASUREMENT_LOG.md, "The nineteenth session's build").
    The input stays as it is; the converted weights carry the layout through the network. A model
    whose forward reshapes activations with ``.view`` fails on such tensors, and any model may
    compute differently in them: both keep the default layout. Not on GPUs, where it is unmeasured.
    """
    small = max(shape[1:]) <= CHANNELS_LAST_MAX_SIDE
    if device.type != "cpu" or not small or not any(parameter.dim() == 4 for parameter in module.parameters()):
        return
    probe = torch.rand((2, *shape), generator=torch.Generator().manual_seed(0)).to(device)
    try:
        with torch.no_grad():
            reference = module(probe)
            module.to(memory_format=torch.channels_last)
            same = torch.allclose(module(probe), reference, rtol=1e-4, atol=1e-4 * (1 + float(reference.abs().max())))
    except Exception:  # the model cannot take channels-last activations (or a batch of two): leave it be
        same = False
    if not same:
        module.to(memory_format=torch.contiguous_format)


def check_weights_stored(module: nn.Module) -> None:
    """Refuse a weight with more values than its storage holds.

    A view can repeat stored values any number of times (a zero stride), so a file of a few bytes can
    hold a weight of any size: a 3.6 KB TorchScript file held a parameter of 3e9 values, and checking it
    for NaN took 20 GB. A trained model's weights are stored in full. TorchScript and torch.export
    modules come straight from the file; state_dict weights are copied into a model of bounded size.
    """
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        stored = tensor.untyped_storage().nbytes() // tensor.element_size() - tensor.storage_offset()
        if tensor.numel() > stored:
            raise CheckpointError(
                f"weight `{name}` has shape {list(tensor.shape)} ({tensor.numel()} values) but stores "
                f"{max(stored, 0)}: it repeats values through a zero-stride view, so the file does not hold the "
                "weight it claims. "
                "Save the model with its weights stored in full (`.contiguous()` on such tensors)."
            )


def _check_finite(module: nn.Module) -> None:
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    bad = [name for name, t in tensors if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(
            f"{len(bad)} weight tensors contain NaN or infinite values ({listing(bad)}); "
            "the training run diverged or the file is corrupt, and such a model cannot be audited."
        )


def _normalised(module: nn.Module, spec: ModelSpec) -> nn.Module:
    if spec.mean is None and spec.std is None:
        return module
    if spec.mean is None or spec.std is None or len(spec.mean) != len(spec.std):
        raise CheckpointError("declare mean and std together, with one value per channel (or one for all).")
    if any(s <= 0 for s in spec.std):
        raise CheckpointError(f"std must be positive, got {spec.std}.")
    channels = spec.input_shape[0] if spec.input_shape else None
    if channels is not None and len(spec.mean) not in (1, channels):
        raise CheckpointError(f"{len(spec.mean)} mean/std values were given for {channels} input channels.")
    return PixelSpaceClassifier(module, spec.mean, spec.std)


def _resolve_shape(built: Built, spec: ModelSpec) -> tuple[int, int, int] | None:
    """The declared or recorded (C, H, W). The dry run allocates an input of that shape, so a recorded one
    is bounded here; declared ones were bounded on entry (limits.check_declared)."""
    declared, recorded = spec.input_shape, built.input_shape
    if declared is not None and recorded is not None and tuple(declared) != tuple(recorded):
        raise CheckpointError(
            f"declared input shape {tuple(declared)}, but the checkpoint records {tuple(recorded)}; "
            "fix the declaration or omit it."
        )
    if declared is not None:
        return (int(declared[0]), int(declared[1]), int(declared[2]))
    if recorded is not None:
        return checked_input_shape(
            recorded,
            "the input shape the checkpoint records",
            "Refused before running the model; re-export it with the input size it was trained on.",
        )
    return None


def _dry_run(module: nn.Module, shape: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    try:
        with torch.no_grad():
            out = module(torch.zeros((1, *shape), device=device))
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(
            f"the model rejects an input of shape (1, {', '.join(map(str, shape))}): "
            f"{first_line(exc)}. Declare the (C, H, W) the model was trained on."
        ) from exc
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 1:
        kind = type(out).__name__ if not isinstance(out, torch.Tensor) else f"a tensor of shape {list(out.shape)}"
        raise CheckpointError(
            f"the model returns {kind} for one image; expected logits of shape (1, num_classes). "
            "Export the classifier whose forward returns only the logits."
        )
    return out


def _trial_shape(module: nn.Module, built: Built, device: torch.device) -> tuple[tuple[int, int, int], torch.Tensor]:
    if built.in_channels and not in_channels_in_bounds(built.in_channels):
        # the hint comes from a weight's shape, which the file chose; the trials would allocate by it
        raise CheckpointError(
            f"the model's first layer takes {built.in_channels} input channels; at most {MAX_INPUT_CHANNELS} "
            "are accepted, so it was not run."
        )
    channels = [built.in_channels] if built.in_channels else [3, 1]
    errors = []
    for c in channels:
        for size in _TRIAL_SIZES.get(c, (32, 224)):
            try:
                return (c, size, size), _dry_run(module, (c, size, size), device)
            except CheckpointError as exc:
                errors.append(str(exc))
    raise CheckpointError(
        "the checkpoint does not record its input shape and none of the usual sizes works; declare it as "
        f"(C, H, W). Last attempt: {errors[-1] if errors else 'none'}"
    )


def first_conv_channels(module: nn.Module) -> int | None:
    """Input channels of the first 4-D weight, a hint for formats that do not record the input shape."""
    for _, parameter in module.named_parameters():
        if parameter.dim() == 4:
            return int(parameter.shape[1])
    return None
