"""Sizes a file states for free (a zero-width weight, a recorded input shape) are bounded before anything is
built or run at them, with the bounds the API puts on declared values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from pydantic import ValidationError
from safetensors.torch import save_file

from app.schemas import CheckpointCreate
from worker.loading import CheckpointError, ModelSpec, load_checkpoint, registry
from worker.loading.limits import MAX_INPUT_CHANNELS, MAX_INPUT_SIDE, MAX_NUM_CLASSES


@pytest.fixture
def real_builds(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(num_classes, in_channels) of every model the loader builds off the meta device, i.e. allocates."""
    builds: list[tuple[int, int]] = []
    build = registry.build

    def spy(name: str, num_classes: int = 10, in_channels: int = 3) -> torch.nn.Module:
        if torch.get_default_device().type != "meta":
            builds.append((num_classes, in_channels))
        return build(name, num_classes, in_channels)

    monkeypatch.setattr(registry, "build", spy)
    return builds


def _safetensors(model: torch.nn.Module, path: Path, replace: dict[str, torch.Tensor | None]) -> Path:
    """The model's weights as safetensors (architecture small_cnn), some replaced (None: removed)."""
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    for key, tensor in replace.items():
        if tensor is None:
            del tensors[key]
        else:
            tensors[key] = tensor
    save_file(tensors, path, {"arch": "small_cnn"})
    return path


def test_zero_width_head_claiming_too_many_classes_is_refused_unbuilt(
    tiny_model: torch.nn.Module, tmp_path: Path, real_builds: list[tuple[int, int]]
) -> None:
    # (N, 0) holds no bytes whatever N is; the reviewer's N = 2e7 made a 338 KB file take 5.6 GB
    path = _safetensors(
        tiny_model, tmp_path / "m.safetensors", {"classifier.3.weight": torch.zeros(MAX_NUM_CLASSES + 1, 0)}
    )
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert str(caught.value).startswith(
        f"weight `classifier.3.weight` has shape [{MAX_NUM_CLASSES + 1}, 0] and holds no values, which makes "
        f"{MAX_NUM_CLASSES + 1} classes; between 1 and {MAX_NUM_CLASSES} are accepted."
    )
    assert real_builds == []


def test_misfit_within_bounds_is_reported_before_the_model_is_allocated(
    tiny_model: torch.nn.Module, tmp_path: Path, real_builds: list[tuple[int, int]]
) -> None:
    path = _safetensors(tiny_model, tmp_path / "m.safetensors", {"classifier.3.weight": torch.zeros(5000, 0)})
    with pytest.raises(CheckpointError, match=r"classifier\.3\.weight \[5000, 0\] \(expected \[5000, 64\]\)"):
        load_checkpoint(path)
    assert real_builds == []


def test_first_layer_claiming_too_many_channels_is_refused(tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    path = _safetensors(tiny_model, tmp_path / "m.safetensors", {"features.0.weight": torch.zeros(0, 1000, 3, 3)})
    with pytest.raises(CheckpointError, match=rf"which makes 1000 input channels; between 1 and {MAX_INPUT_CHANNELS}"):
        load_checkpoint(path)


def test_declared_class_count_is_bounded_before_building(
    tiny_model: torch.nn.Module, tmp_path: Path, real_builds: list[tuple[int, int]]
) -> None:
    # no head in the file, so only the declaration sizes it (the CLI passes declarations unchecked)
    path = _safetensors(
        tiny_model, tmp_path / "m.safetensors", {"classifier.3.weight": None, "classifier.3.bias": None}
    )
    with pytest.raises(CheckpointError, match=rf"declared num_classes={MAX_NUM_CLASSES + 1}; between 1 and"):
        load_checkpoint(path, ModelSpec(num_classes=MAX_NUM_CLASSES + 1))
    assert real_builds == []


def _pooling_onnx(path: Path, dims: list[int | str], conv_channels: int | None = None) -> Path:
    """[Conv 1x1 ->] GlobalAveragePool -> Flatten -> Gemm: runs on any (C, H, W), records ``dims``."""
    channels = dims[1] if isinstance(dims[1], int) else 3
    nodes, weights = [], []
    if conv_channels is not None:
        nodes.append(helper.make_node("Conv", ["x", "conv_w"], ["x1"]))
        weights.append(numpy_helper.from_array(np.ones((2, conv_channels, 1, 1), np.float32), "conv_w"))
        channels = 2
    nodes += [
        helper.make_node("GlobalAveragePool", ["x1" if conv_channels else "x"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "w"], ["y"], transB=1),
    ]
    weights.append(numpy_helper.from_array(np.ones((10, channels), np.float32), "w"))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [dims[0], 10])],
        weights,
    )
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    return path


@pytest.mark.parametrize(
    "shape", [(1, MAX_INPUT_SIDE + 1, 8), (1, 8, MAX_INPUT_SIDE + 1), (MAX_INPUT_CHANNELS + 1, 8, 8)]
)
def test_onnx_recording_an_input_shape_out_of_bounds_is_refused(shape: tuple[int, int, int], tmp_path: Path) -> None:
    # the reviewer's 197-byte (1, 1, 40000, 40000) graph allocated 6.6 GB at the dry run
    path = _pooling_onnx(tmp_path / "m.onnx", [1, *shape])
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert str(caught.value).startswith(
        f"the input shape the checkpoint records is {shape}, outside the accepted input shapes ((C, H, W) with "
        f"1 <= C <= {MAX_INPUT_CHANNELS} and 1 <= H, W <= {MAX_INPUT_SIDE}). Refused before running the model"
    )


def test_onnx_recording_the_largest_accepted_side_loads(tmp_path: Path) -> None:
    loaded = load_checkpoint(_pooling_onnx(tmp_path / "m.onnx", [1, 1, MAX_INPUT_SIDE, 8]))
    assert loaded.input_shape == (1, MAX_INPUT_SIDE, 8)


def test_declared_input_shape_out_of_bounds_is_refused(tmp_path: Path) -> None:
    path = _pooling_onnx(tmp_path / "m.onnx", ["n", 1, "h", "w"])
    with pytest.raises(
        CheckpointError, match=rf"^the declared input shape is \(1, {MAX_INPUT_SIDE + 1}, 8\), outside the accepted"
    ):
        load_checkpoint(path, ModelSpec(input_shape=(1, MAX_INPUT_SIDE + 1, 8)))


def test_first_layer_taking_too_many_channels_is_not_run_at_a_trial_shape(tmp_path: Path) -> None:
    # no recorded shape: the trials would take their channel count from the first weight, which the file chose
    path = _pooling_onnx(tmp_path / "m.onnx", ["n", "c", "h", "w"], conv_channels=MAX_INPUT_CHANNELS + 1)
    with pytest.raises(CheckpointError, match=rf"first layer takes {MAX_INPUT_CHANNELS + 1} input channels; at most"):
        load_checkpoint(path)


class _PoolingClassifier(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) @ torch.ones(x.shape[1], 10)


def test_export_whose_example_input_is_out_of_bounds_is_refused_before_its_trial_run(tmp_path: Path) -> None:
    path = tmp_path / "m.pt2"
    example = torch.zeros(1, 1, MAX_INPUT_SIDE + 1, 1)
    torch.export.save(torch.export.export(_PoolingClassifier(), (example,)), path)
    with pytest.raises(
        CheckpointError,
        match=rf"^the input shape the program's example input records is \(1, {MAX_INPUT_SIDE + 1}, 1\)",
    ):
        load_checkpoint(path)


def test_the_bounds_are_the_ones_the_api_puts_on_declared_values() -> None:
    largest = {"input_shape": [MAX_INPUT_CHANNELS, MAX_INPUT_SIDE, MAX_INPUT_SIDE], "num_classes": MAX_NUM_CLASSES}
    CheckpointCreate(**largest)  # type: ignore[arg-type]
    for field, value in (
        ("num_classes", MAX_NUM_CLASSES + 1),
        ("input_shape", [MAX_INPUT_CHANNELS + 1, 8, 8]),
        ("input_shape", [1, MAX_INPUT_SIDE + 1, 8]),
    ):
        with pytest.raises(ValidationError):
            CheckpointCreate(**{**largest, field: value})  # type: ignore[arg-type]


class _RepeatedWeight(torch.nn.Module):
    def __init__(self, values: int) -> None:
        super().__init__()
        self.repeated = torch.nn.Parameter(torch.zeros(1).expand(values), requires_grad=False)
        self.fc = torch.nn.Linear(3, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


def test_torchscript_weight_repeating_one_stored_value_is_refused(tmp_path: Path) -> None:
    # a zero-stride view holds any number of values in a few bytes: 3e9 of them cost 20 GB at the NaN check
    path = tmp_path / "m.pt"
    torch.jit.script(_RepeatedWeight(10**6)).save(str(path))
    with pytest.raises(
        CheckpointError, match=r"^weight `repeated` has shape \[1000000\] \(1000000 values\) but stores 1:"
    ):
        load_checkpoint(path)
