"""Every accepted format, saved from the same in-memory model, loads back to the same logits."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.worker.loading.conftest import INPUT_SHAPE
from worker.loading import CheckpointError, ModelSpec, inspect_checkpoint, load_checkpoint

ATOL = 1e-5  # float32 re-execution of the same ops; the ONNX and export graphs reorder nothing


def _save(fmt: str, model: torch.nn.Module, path: Path) -> ModelSpec:
    example = torch.zeros(1, *INPUT_SHAPE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt == "state_dict":
            torch.save(model.state_dict(), path)
        elif fmt == "legacy_state_dict":
            torch.save(model.state_dict(), path, _use_new_zipfile_serialization=False)
        elif fmt == "wrapped":
            wrapped = {"module." + k: v for k, v in model.state_dict().items()}
            torch.save({"state_dict": wrapped, "epoch": 7, "best_acc": 0.91}, path)
        elif fmt == "safetensors":
            save_file(model.state_dict(), path)
        elif fmt == "torchscript_trace":
            torch.jit.trace(model, example).save(str(path))
        elif fmt == "torchscript_script":
            torch.jit.script(model).save(str(path))
        elif fmt == "export":
            torch.export.save(torch.export.export(model, (example,)), path)
        elif fmt == "onnx":
            # SmallCNN's adaptive pool exports only at 32x32 (output size a factor of the input)
            torch.onnx.export(model, (torch.zeros(1, 1, 32, 32),), path, dynamo=False)
    return (
        ModelSpec(arch="small_cnn")
        if fmt in ("state_dict", "legacy_state_dict", "wrapped", "safetensors")
        else ModelSpec()
    )


FORMATS = {
    "state_dict": "state_dict",
    "legacy_state_dict": "state_dict",
    "wrapped": "state_dict",
    "safetensors": "safetensors",
    "torchscript_trace": "torchscript",
    "torchscript_script": "torchscript",
    "export": "export",
    "onnx": "onnx",
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_round_trip_gives_the_same_logits(fmt: str, tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "model.bin"  # the name says nothing: the format comes from the bytes
    spec = _save(fmt, tiny_model, path)
    assert inspect_checkpoint(path) == FORMATS[fmt]
    loaded = load_checkpoint(path, spec)
    shape = (1, 32, 32) if fmt == "onnx" else INPUT_SHAPE
    x = torch.rand(5, *shape, generator=torch.Generator().manual_seed(2))
    expected = tiny_model(x)
    assert loaded.format == FORMATS[fmt]
    assert loaded.num_classes == 10
    assert loaded.input_shape == shape
    assert not loaded.module.training
    assert torch.allclose(loaded.module(x), expected, atol=ATOL), f"{fmt}: logits differ by more than {ATOL}"


def test_input_gradients_flow_through_every_wrapper(tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "model.pt2"
    _save("export", tiny_model, path)
    loaded = load_checkpoint(path)
    x = torch.rand(3, *INPUT_SHAPE, requires_grad=True)
    loaded.module(x)[:, 2].sum().backward()
    reference = x.detach().clone().requires_grad_(True)
    tiny_model(reference)[:, 2].sum().backward()
    assert x.grad is not None and torch.allclose(x.grad, reference.grad, atol=1e-6)  # type: ignore[arg-type]


def test_normalisation_is_folded_into_the_module(tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(tiny_model.state_dict(), path)
    loaded = load_checkpoint(path, ModelSpec(arch="small_cnn", mean=(0.5,), std=(0.25,)))
    x = torch.rand(2, *INPUT_SHAPE)
    assert torch.allclose(loaded.module(x), tiny_model((x - 0.5) / 0.25), atol=ATOL)


def test_declared_class_count_that_contradicts_the_weights_names_both(
    tiny_model: torch.nn.Module, tmp_path: Path
) -> None:
    path = tmp_path / "model.pt"
    torch.save(tiny_model.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"num_classes=43.*10 outputs"):
        load_checkpoint(path, ModelSpec(arch="small_cnn", num_classes=43))


def test_declared_input_shape_that_contradicts_the_export_names_both(
    tiny_model: torch.nn.Module, tmp_path: Path
) -> None:
    path = tmp_path / "model.pt2"
    _save("export", tiny_model, path)
    with pytest.raises(CheckpointError, match=r"\(3, 32, 32\).*\(1, 28, 28\)"):
        load_checkpoint(path, ModelSpec(input_shape=(3, 32, 32)))


def test_wrong_input_shape_for_a_fixed_size_model_is_explained(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1 * 28 * 28, 10)).eval()
    path = tmp_path / "model.pt"
    torch.jit.script(model).save(str(path))
    with pytest.raises(CheckpointError, match=r"rejects an input of shape \(1, 1, 32, 32\)"):
        load_checkpoint(path, ModelSpec(input_shape=(1, 32, 32)))
    assert load_checkpoint(path, ModelSpec(input_shape=(1, 28, 28))).num_classes == 10


def test_wrong_architecture_gives_a_readable_key_report(tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(tiny_model.state_dict(), path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path, ModelSpec(arch="lenet5"))
    message = str(error.value)
    assert "2 missing weights (classifier.5.weight, classifier.5.bias)" in message
    assert "weights with the wrong shape" in message and "more)" in message  # a few shown, the rest counted
    assert "different architecture" in message and "backdoor-audit archs" in message


def test_state_dict_without_arch_asks_for_one(tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file(tiny_model.state_dict(), path)
    with pytest.raises(CheckpointError, match="--arch"):
        load_checkpoint(path)


def test_export_with_a_dynamic_batch_runs_batched(tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(tiny_model, (torch.zeros(2, *INPUT_SHAPE),), dynamic_shapes={"x": {0: batch}})
    path = tmp_path / "model.pt2"
    torch.export.save(program, path)
    loaded = load_checkpoint(path)
    x = torch.rand(6, *INPUT_SHAPE)
    assert loaded.input_shape == INPUT_SHAPE
    assert not any("sample by sample" in note for note in loaded.notes)
    assert torch.allclose(loaded.module(x), tiny_model(x), atol=ATOL)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("fmt", ["state_dict", "safetensors", "torchscript_trace", "export", "onnx"])
def test_every_format_loads_onto_the_gpu(fmt: str, tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    spec = _save(fmt, tiny_model, path)
    loaded = load_checkpoint(path, spec, device="cuda")
    shape = (1, 32, 32) if fmt == "onnx" else INPUT_SHAPE
    x = torch.rand(3, *shape)
    assert all(p.is_cuda for p in loaded.module.parameters())
    assert torch.allclose(loaded.module(x.cuda()).cpu(), tiny_model(x), atol=1e-4)
