"""Fixtures for checkpoint intake tests: a tiny trained-shape model, a canary, and zip surgery."""

from __future__ import annotations

import collections
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from worker.nets import SmallCNN

INPUT_SHAPE = (1, 28, 28)


@pytest.fixture
def tiny_model() -> torch.nn.Module:
    """SmallCNN for 1x28x28 inputs with fixed random weights and non-trivial biases, in eval mode."""
    torch.manual_seed(0)
    return SmallCNN(num_classes=10, in_channels=1).eval()


@pytest.fixture
def pixels() -> torch.Tensor:
    return torch.rand(4, *INPUT_SHAPE, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Path]:
    """A path that every hostile payload tries to create; it must still be absent after the test."""
    path = tmp_path / "canary"
    yield path
    assert not path.exists(), "a hostile payload ran during loading"


def torch_zip_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def replace_member(archive: bytes, suffix: str, content: bytes) -> bytes:
    """A copy of the zip ``archive`` whose member ending with ``suffix`` holds ``content`` instead."""
    source = zipfile.ZipFile(io.BytesIO(archive))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            data = content if info.filename.endswith(suffix) else source.read(info)
            target.writestr(info.filename, data)
    return out.getvalue()


def add_member(archive: bytes, name: str, content: bytes) -> bytes:
    out = io.BytesIO(archive)
    with zipfile.ZipFile(out, "a") as target:
        prefix = target.namelist()[0].split("/", 1)[0]
        target.writestr(f"{prefix}/{name}", content)
    return out.getvalue()


class StorageStandIn:
    """Stands for a tensor storage in a hand-made torch pickle (a Pickler's persistent_id replaces it)."""


class ClaimingTensor:
    """Pickles as torch's tensor rebuild call on a StorageStandIn, so a test chooses what the storage claims."""

    def __init__(self, size: tuple[int, ...]) -> None:
        self.size = size

    def __reduce__(self) -> tuple[object, ...]:
        stride = tuple(int(torch.tensor(self.size[i + 1 :]).prod()) for i in range(len(self.size)))
        args: tuple[object, ...] = (StorageStandIn(), 0, self.size, stride, False, collections.OrderedDict())
        return (torch._utils._rebuild_tensor_v2, args)
