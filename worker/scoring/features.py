"""Per-class features of a map that separate a trigger from an object-like class signature.

All functions are pure torch and take the engine's raw maps (K, C, H, W) in pixel units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Window:
    """A square window of side ``size`` whose top-left pixel is (x, y)."""

    x: int
    y: int
    size: int

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """[x0, y0, x1, y1] with x1/y1 exclusive."""
        return (self.x, self.y, self.x + self.size, self.y + self.size)

    def mask(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        mask = torch.zeros(height, width, device=device)
        mask[self.y : self.y + self.size, self.x : self.x + self.size] = 1.0
        return mask


def window_size(height: int, width: int, fraction: float) -> int:
    return max(2, min(height, width, round(fraction * min(height, width))))


def energy(maps: torch.Tensor) -> torch.Tensor:
    """Per-pixel squared norm over channels: (K, C, H, W) -> (K, H, W)."""
    return maps.pow(2).sum(dim=1)


def window_energy(pixel_energy: torch.Tensor, size: int) -> torch.Tensor:
    """Sum of energy inside every size x size window: (K, H, W) -> (K, H-size+1, W-size+1)."""
    return F.avg_pool2d(pixel_energy[:, None], size, stride=1)[:, 0] * size * size


def best_windows(pixel_energy: torch.Tensor, size: int) -> tuple[list[Window], torch.Tensor]:
    """Each class's highest-energy window and the share of its map's energy inside it."""
    sums = window_energy(pixel_energy, size)
    flat = sums.flatten(1)
    best, index = flat.max(dim=1)
    columns = sums.shape[-1]
    windows = [Window(x=int(i) % columns, y=int(i) // columns, size=size) for i in index.tolist()]
    share = best / pixel_energy.flatten(1).sum(dim=1).clamp_min(1e-12)
    return windows, share


def shared_hotspot(pixel_energy: torch.Tensor, windows: list[Window]) -> torch.Tensor:
    """For each class k, the mean share of the *other* classes' energy that falls in k's best window.

    Clean classes push away from a trigger too, so the others' maps carry a blob at its spot
    (DESIGN.md section 7); a class whose window the others also attend to is suspicious.
    """
    k = pixel_energy.shape[0]
    share = pixel_energy / pixel_energy.flatten(1).sum(dim=1).clamp_min(1e-12)[:, None, None]
    out = torch.zeros(k)
    for i, window in enumerate(windows):
        x0, y0, x1, y1 = window.bbox
        inside = share[:, y0:y1, x0:x1].sum(dim=(1, 2))
        others = torch.cat([inside[:i], inside[i + 1 :]])
        out[i] = others.mean() if len(others) else 0.0
    return out


def trigger_pattern(class_map: torch.Tensor) -> torch.Tensor:
    """A saturated pattern from a map: 1 where the map brightens a pixel's channel, 0 where it darkens it.

    Patch triggers are painted at full intensity; the map gives their sign far more reliably than their value.
    """
    return (class_map > 0).float()
