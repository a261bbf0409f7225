"""A checkpoint saved in any accepted format scans to the same maps as the in-memory model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.worker.loading.conftest import INPUT_SHAPE
from tests.worker.loading.test_roundtrip import FORMATS, _save
from worker.loading import load_checkpoint
from worker.saliency.config import SaliencyConfig
from worker.saliency.engine import compute_class_maps

CONFIG = SaliencyConfig(iterations=6, refine_iterations=2, restarts=1, seeds_per_step=4, fidelity_seeds=8)
# the loaded graph re-executes the same float32 ops, but not always the same kernels: steps normalise by
# the gradient's l-inf norm, so a sign flip of a near-zero gradient entry moves a pixel by one step, and
# the later steps follow it. On AVX2 CPUs one class's ONNX map moved by up to 3.5e-3 (3.6% of its
# largest value, cosine 0.99998) while the others matched to 3e-8; a wrong load differs entirely.
RELATIVE_TOLERANCE = 0.05
MIN_COSINE = 0.999


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_saved_model_scans_to_the_same_maps(fmt: str, tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    loaded = load_checkpoint(path, _save(fmt, tiny_model, path))
    shape = (1, 32, 32) if fmt == "onnx" else INPUT_SHAPE
    expected = compute_class_maps(tiny_model, shape, 10, CONFIG)
    got = compute_class_maps(loaded.module, loaded.input_shape, loaded.num_classes, CONFIG)
    for want, have in zip(expected, got, strict=True):
        scale = float(want.raw.abs().max())
        assert torch.allclose(want.raw, have.raw, atol=RELATIVE_TOLERANCE * scale), (
            f"{fmt}: class {want.class_index} map differs"
        )
        cosine = torch.nn.functional.cosine_similarity(want.raw.flatten(), have.raw.flatten(), dim=0)
        assert float(cosine) >= MIN_COSINE, f"{fmt}: class {want.class_index} map points elsewhere"
        assert want.success_rate == have.success_rate
