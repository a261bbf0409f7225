from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from worker.clean_images import load_clean_images


def test_npz_in_either_layout_and_png_folders_load_in_unit_range(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "hwc.npz", images=pixels)
    np.savez(tmp_path / "chw.npz", pixels.transpose(0, 3, 1, 2))
    hwc = load_clean_images(tmp_path / "hwc.npz", (3, 8, 8))
    chw = load_clean_images(tmp_path / "chw.npz", (3, 8, 8))
    assert hwc.shape == (5, 3, 8, 8) and hwc.max() <= 1 and np.allclose(hwc, chw)
    folder = tmp_path / "png"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(pixels[i]).save(folder / f"{i}.png")
    images = load_clean_images(folder, (3, 8, 8))
    assert np.allclose(images.numpy(), hwc[:2].numpy(), atol=1e-6)


def test_bad_clean_images_are_explained(tmp_path: Path) -> None:
    np.savez(tmp_path / "wrong.npz", images=np.zeros((2, 5, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"expected \(N, 1, 8, 8\)"):
        load_clean_images(tmp_path / "wrong.npz", (1, 8, 8))
    np.savez(tmp_path / "range.npz", images=np.full((2, 1, 8, 8), 3.0, dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load_clean_images(tmp_path / "range.npz", (1, 8, 8))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no \.png/\.jpg"):
        load_clean_images(tmp_path / "empty", (1, 8, 8))
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(tmp_path / "empty" / "small.png")
    with pytest.raises(ValueError, match="is 4x4, expected 8x8"):
        load_clean_images(tmp_path / "empty", (1, 8, 8))
    with pytest.raises(ValueError, match="expected a folder"):
        load_clean_images(tmp_path / "images.txt", (1, 8, 8))
