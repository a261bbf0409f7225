"""The memory layout a loaded model runs in: channels-last for conv nets on the CPU, where it is faster,
unless the model cannot run in it or computes differently there."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from tests.worker.loading.conftest import INPUT_SHAPE
from worker.loading import ModelSpec, load_checkpoint


def _channels_last(module: nn.Module) -> bool:
    """Whether every conv weight is laid out channels-last (one with a single input channel is both ways)."""
    convs = [p for p in module.parameters() if p.dim() == 4]
    in_layout = all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    return bool(convs) and in_layout and not all(p.is_contiguous() for p in convs)


class _ViewsItsActivations(nn.Module):
    """A conv net that flattens with ``.view``, which channels-last activations cannot take."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4 * 28 * 28, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.conv(x))
        return self.head(features.view(features.shape[0], -1))


def test_a_conv_net_runs_channels_last_with_the_same_logits(tiny_model: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file(tiny_model.state_dict(), path)
    loaded = load_checkpoint(path, ModelSpec(arch="small_cnn"))
    x = torch.rand(8, *INPUT_SHAPE, generator=torch.Generator().manual_seed(3), requires_grad=True)
    assert _channels_last(loaded.module)
    assert torch.allclose(loaded.module(x), tiny_model(x), atol=1e-5)
    (grad,) = torch.autograd.grad(loaded.module(x)[:, 4].sum(), x)
    (expected,) = torch.autograd.grad(tiny_model(x)[:, 4].sum(), x)
    assert torch.allclose(grad, expected, atol=1e-6), "input gradients (what the maps are made of) must agree"


def test_a_model_that_views_its_activations_keeps_the_default_layout(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _ViewsItsActivations().eval()
    x = torch.rand(3, *INPUT_SHAPE)
    assert _fails_in_channels_last(model, x), "the fixture must be a model that channels-last breaks"
    path = tmp_path / "model.pt"
    torch.jit.script(model).save(str(path))
    loaded = load_checkpoint(path)
    assert not _channels_last(loaded.module)
    assert torch.allclose(loaded.module(x), model(x), atol=1e-5)


def _fails_in_channels_last(model: nn.Module, x: torch.Tensor) -> bool:
    converted = _ViewsItsActivations().eval()
    converted.load_state_dict(model.state_dict())
    converted.to(memory_format=torch.channels_last)
    try:
        converted(x)
    except RuntimeError:
        return True
    return False


def test_a_model_on_larger_inputs_keeps_the_default_layout(tiny_model: nn.Module, tmp_path: Path) -> None:
    """Above 32 x 32 pixels channels-last stops paying off (resnet18 lost 19-25% at 48-64 px)."""
    path = tmp_path / "model.safetensors"
    save_file(tiny_model.state_dict(), path)
    loaded = load_checkpoint(path, ModelSpec(arch="small_cnn", input_shape=(1, 64, 64)))
    assert not _channels_last(loaded.module)
    assert _channels_last(load_checkpoint(path, ModelSpec(arch="small_cnn", input_shape=(1, 32, 32))).module)
