"""A few clean images for detectors that need data (Neural Cleanse): a folder of PNG/JPEG files or an
``.npz`` array, checked against the model's input shape. Pixels come back in [0, 1], (N, C, H, W)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

MAX_IMAGES = 1000
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def load_clean_images(path: Path, input_shape: tuple[int, int, int]) -> torch.Tensor:
    """Raise ValueError with what was wrong and what is expected; no resizing, so nothing is guessed."""
    channels, height, width = input_shape
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:MAX_IMAGES]
        if not files:
            raise ValueError(f"--clean-images {path}: no .png/.jpg files in this folder")
        mode = "L" if channels == 1 else "RGB"
        arrays = []
        for file in files:
            with Image.open(file) as image:
                if image.size != (width, height):
                    raise ValueError(
                        f"--clean-images: {file.name} is {image.size[0]}x{image.size[1]}, expected {width}x{height}"
                    )
                arrays.append(np.asarray(image.convert(mode), dtype=np.float32).reshape(height, width, channels))
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255.0
    if path.suffix == ".npz" and path.is_file():
        with np.load(path, allow_pickle=False) as data:
            if not data.files:
                raise ValueError(f"--clean-images {path}: the .npz holds no array")
            array = data["images"] if "images" in data.files else data[data.files[0]]
        return _from_array(array[:MAX_IMAGES], input_shape, path)
    raise ValueError(f"--clean-images {path}: expected a folder of .png/.jpg images or an .npz file")


def _from_array(array: np.ndarray, input_shape: tuple[int, int, int], path: Path) -> torch.Tensor:
    channels, height, width = input_shape
    if array.ndim == 3 and channels == 1:
        array = array[:, None]
    if array.ndim == 4 and array.shape[1:] == (height, width, channels):
        array = array.transpose(0, 3, 1, 2)
    if array.ndim != 4 or array.shape[1:] != (channels, height, width):
        raise ValueError(
            f"--clean-images {path}: array shape {array.shape}, expected (N, {channels}, {height}, {width})"
        )
    images = torch.from_numpy(np.ascontiguousarray(array)).float()
    if array.dtype == np.uint8:
        images = images / 255.0
    if images.min() < 0 or images.max() > 1:
        raise ValueError(f"--clean-images {path}: pixels must be uint8 or floats in [0, 1]")
    return images
