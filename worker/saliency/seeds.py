"""Seed distributions D: the random starting points that are nudged toward each class."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from worker.saliency.config import SeedDistribution


def draw_seeds(
    distribution: SeedDistribution,
    shape: tuple[int, ...],
    *,
    generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """Draw i.i.d. seeds in [0, 1] of ``shape`` (..., C, H, W)."""
    if distribution == "uniform":
        return torch.rand(shape, generator=generator, device=device)
    if distribution == "gaussian":
        return (0.5 + 0.25 * torch.randn(shape, generator=generator, device=device)).clamp_(0.0, 1.0)
    # lowfreq: uniform noise on a grid 4x coarser, upsampled bilinearly; smoother, more image-like seeds
    *lead, c, h, w = shape
    coarse = torch.rand((*lead, c, max(1, h // 4), max(1, w // 4)), generator=generator, device=device)
    flat = coarse.reshape(-1, c, coarse.shape[-2], coarse.shape[-1])
    fine = F.interpolate(flat, size=(h, w), mode="bilinear", align_corners=False)
    return fine.reshape(shape)
