"""``load_checkpoint``: the one entry point that turns an untrusted file into an auditable model.

Order matters: read with a size bound, detect the format from the bytes, run that format's safety
checks (intake), and only then deserialise, from the same in-memory bytes, with torch's restricted
loaders. Any failure past that point is still reported as CheckpointError.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import torch

from worker.loading import onnx_module, registry
from worker.loading.export_program import load_export
from worker.loading.finalize import Built, finalize, first_conv_channels
from worker.loading.intake import DEFAULT_MAX_BYTES, Intake, inspect_bytes, read_checkpoint
from worker.loading.limits import check_declared
from worker.loading.messages import first_line
from worker.loading.state_dict import (
    Weights,
    check_fit,
    expected_names,
    infer_sizes,
    load_into,
    match_names,
    meta_shapes,
    unwrap,
)
from worker.loading.types import CheckpointError, LoadedModel, ModelSpec


def load_checkpoint(
    path: str | Path,
    spec: ModelSpec = ModelSpec(),  # noqa: B008 - frozen dataclass, safe as a default
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Load an untrusted checkpoint as a classifier taking [0, 1] pixels; raise only CheckpointError."""
    check_declared(spec)  # before anything is built or run at the declared sizes
    intake = inspect_bytes(read_checkpoint(path, max_bytes), max_bytes)
    try:
        target = torch.device(device)
        built = _BUILDERS[intake.format](intake, spec, target)
        return finalize(built, spec, intake.sha256, target)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(
            f"the {intake.format} checkpoint passed the safety checks but failed to load: {first_line(exc)}"
        ) from exc


def _from_weights(weights: Weights, spec: ModelSpec, arch: str | None, fmt: str) -> Built:
    if arch is None:
        raise CheckpointError(
            f"a {fmt} file holds weights only; name the architecture they belong to (--arch NAME, see "
            "`backdoor-audit archs`), or upload a TorchScript, torch.export or ONNX file instead."
        )
    info = registry.describe(arch)
    weights = match_names(weights, expected_names(arch))
    num_classes, in_channels = infer_sizes(arch, weights.tensors)
    if num_classes is not None and spec.num_classes is not None and num_classes != spec.num_classes:
        raise CheckpointError(
            f"declared num_classes={spec.num_classes}, but the weights' final layer has {num_classes} outputs."
        )
    declared_channels = spec.input_shape[0] if spec.input_shape else None
    if in_channels is not None and declared_channels is not None and in_channels != declared_channels:
        raise CheckpointError(
            f"declared {declared_channels} input channels, but the weights' first layer takes {in_channels}."
        )
    # when no weight reveals a size, the head is missing and check_fit reports it with the other keys
    num_classes = num_classes or spec.num_classes or 10
    channels = in_channels or declared_channels or 3
    # a misfit is reported from shapes alone, before the model is allocated
    check_fit(arch, meta_shapes(arch, num_classes, channels), weights.tensors)
    model = registry.build(arch, num_classes=num_classes, in_channels=channels)
    notes = weights.notes + load_into(model, weights, arch)
    shape = spec.input_shape
    if shape is None:
        size = info.default_size or (28 if channels == 1 else 32)
        shape = (channels, size, size)
        notes.append(f"input shape {shape} assumed for {arch!r}; declare it if the model was trained on another size")
    return Built(model, fmt, shape, arch=arch, in_channels=channels, notes=notes)


def _state_dict(intake: Intake, spec: ModelSpec, device: torch.device) -> Built:
    obj = torch.load(io.BytesIO(intake.data), map_location="cpu", weights_only=True)
    return _from_weights(unwrap(obj), spec, spec.arch, "state_dict")


def _safetensors(intake: Intake, spec: ModelSpec, device: torch.device) -> Built:
    from safetensors.torch import load

    metadata = intake.safetensors_header.metadata if intake.safetensors_header else {}
    arch = spec.arch or metadata.get("arch")
    return _from_weights(Weights(load(intake.data), []), spec, arch, "safetensors")


def _torchscript(intake: Intake, spec: ModelSpec, device: torch.device) -> Built:
    module = torch.jit.load(io.BytesIO(intake.data), map_location=device)
    return Built(module, "torchscript", None, arch=spec.arch, in_channels=first_conv_channels(module))


def _export(intake: Intake, spec: ModelSpec, device: torch.device) -> Built:
    module, shape = load_export(intake.data, device)
    notes = ["train/eval mode was fixed when the program was exported"]
    if module.per_sample:
        notes.append("the program was exported for a batch of one; the audit runs it sample by sample")
    return Built(module, "export", shape, arch=spec.arch, in_channels=first_conv_channels(module), notes=notes)


def _onnx(intake: Intake, spec: ModelSpec, device: torch.device) -> Built:
    model = onnx_module.parse(intake.data)
    module = onnx_module.OnnxClassifier(model)
    notes = []
    if any(node.op_type == "Softmax" for node in model.graph.node):
        notes.append("the ONNX graph contains Softmax: its outputs may be probabilities rather than logits")
    shape = onnx_module.recorded_input_shape(model)
    return Built(module, "onnx", shape, arch=spec.arch, in_channels=first_conv_channels(module), notes=notes)


_BUILDERS: dict[str, Callable[[Intake, ModelSpec, torch.device], Built]] = {
    "state_dict": _state_dict,
    "safetensors": _safetensors,
    "torchscript": _torchscript,
    "export": _export,
    "onnx": _onnx,
}
