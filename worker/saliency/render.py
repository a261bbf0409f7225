"""Turn maps into pictures: the signed visualisation and the heatmap of DESIGN.md section 2."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image


def signed_visualisation(raw: torch.Tensor) -> torch.Tensor:
    """0.5 + rho / (2 max|rho|): grey is zero, bright pushes pixels up, dark pushes them down. (C, H, W) in [0, 1]."""
    peak = raw.abs().max().clamp_min(1e-12)
    return 0.5 + raw / (2 * peak)


def heatmap(raw: torch.Tensor) -> torch.Tensor:
    """Per-pixel norm over channels, min-max scaled to [0, 1]. (H, W)."""
    energy = raw.norm(dim=0)
    low, high = energy.min(), energy.max()
    return (energy - low) / (high - low).clamp_min(1e-12)


# a perceptually ordered colour ramp (dark blue -> red -> yellow) for heatmaps, 5 anchor colours
_RAMP = np.array([[13, 8, 135], [126, 3, 168], [204, 71, 120], [248, 149, 64], [240, 249, 33]], dtype=np.float64)


def _colourise(values: np.ndarray) -> np.ndarray:
    position = np.clip(values, 0.0, 1.0) * (len(_RAMP) - 1)
    low = np.floor(position).astype(int).clip(0, len(_RAMP) - 2)
    frac = (position - low)[..., None]
    return ((1 - frac) * _RAMP[low] + frac * _RAMP[low + 1]).round().astype(np.uint8)


def png_bytes(image: torch.Tensor, *, colour_map: bool = False, scale: int = 1) -> bytes:
    """Encode a (C, H, W) or (H, W) image in [0, 1] as PNG, upscaled by ``scale`` with nearest neighbours."""
    array = image.detach().cpu().float().numpy()
    if colour_map:
        if array.ndim != 2:
            raise ValueError("a colour-mapped image must be (H, W)")
        pixels = _colourise(array)
    else:
        pixels = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
        pixels = pixels[0] if pixels.shape[0] == 1 else np.transpose(pixels[:3], (1, 2, 0))
    picture = Image.fromarray(pixels)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
