"""``resolve_device``: every device a user can mistype is a ValueError the commands report as exit 2."""

from __future__ import annotations

import pytest
import torch

from worker.audit import resolve_device


def _gpus(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


@pytest.mark.parametrize("name", ["gpu", "CPU", "cuda:x", "cuda:-1", ""])
def test_a_name_torch_does_not_know_is_a_value_error_that_lists_the_choices(name: str) -> None:
    with pytest.raises(ValueError, match="is not a device; use auto, cpu, cuda or cuda:N"):
        resolve_device(name)


def test_a_cuda_index_past_the_machines_devices_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 1)
    with pytest.raises(ValueError, match=r"--device cuda:7: this machine has 1 CUDA device \(cuda:0 to cuda:0\)"):
        resolve_device("cuda:7")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("auto") == torch.device("cuda")


def test_cuda_without_a_gpu_is_refused_and_auto_falls_back_to_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 0)
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match="no CUDA device is available; use --device cpu or auto"):
            resolve_device(name)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
