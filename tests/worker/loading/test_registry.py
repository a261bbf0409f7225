"""The architecture registry: unique names, build by name, helpful errors, nothing downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.cli import main
from worker.loading import CheckpointError, ModelSpec, load_checkpoint, registry


def test_duplicate_name_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        registry.register("small_cnn")(lambda num_classes, in_channels: torch.nn.Identity())


def test_project_nets_build_by_name_with_the_requested_sizes() -> None:
    for name in ("small_cnn", "lenet5", "small_resnet", "preact_resnet18"):
        model = registry.build(name, num_classes=7, in_channels=1).eval()
        assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 7), name


def test_torchvision_models_are_listed_and_adapted_to_one_channel() -> None:
    names = registry.available()
    assert {"resnet18", "mobilenet_v3_small", "shufflenet_v2_x0_5", "squeezenet1_1"} <= set(names)
    model = registry.build("squeezenet1_1", num_classes=5, in_channels=1).eval()
    assert model(torch.zeros(1, 1, 64, 64)).shape == (1, 5)
    assert registry.describe("resnet18").family == "torchvision"


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(CheckpointError, match=r"unknown architecture 'resnet19'.*Did you mean.*resnet18"):
        registry.build("resnet19")


def test_torchvision_state_dict_infers_classes_and_channels(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = registry.build("shufflenet_v2_x0_5", num_classes=4, in_channels=1).eval()
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    loaded = load_checkpoint(path, ModelSpec(arch="shufflenet_v2_x0_5", input_shape=(1, 32, 32)))
    x = torch.rand(2, 1, 32, 32)
    assert loaded.num_classes == 4
    assert torch.allclose(loaded.module(x), model(x), atol=1e-5)


def test_archs_command_lists_families(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["archs", "--family", "project"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["lenet5", "preact_resnet18", "small_cnn", "small_resnet"]
    assert all(line.split()[1] == "project" for line in lines)


def test_loading_never_opens_a_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("checkpoint loading tried to use the network")

    model = registry.build("mobilenet_v3_small", num_classes=3, in_channels=3).eval()
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    loaded = load_checkpoint(path, ModelSpec(arch="mobilenet_v3_small", input_shape=(3, 64, 64)))
    assert loaded.num_classes == 3
