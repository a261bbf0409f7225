"""Backdoor triggers the zoo plants, and all-to-one data poisoning.

Every attack is a small frozen dataclass: it names its ``target_class``, its ``family`` (the
benchmark groups results by it) and stamps its trigger with ``apply(images)`` on pixels in [0, 1]
shaped (N, C, H, W), returning a new tensor. Triggers are fixed per attack (seeded), because a
backdoor is one trigger the attacker reuses, not a fresh one per image.

References: BadNets (Gu et al., 2017), Blended (Chen et al., 2017), WaNet (Nguyen & Tran, ICLR 2021),
SIG (Barni et al., ICIP 2019).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

Corner = Literal["top_left", "top_right", "bottom_left", "bottom_right", "centre"]


class Attack(Protocol):
    """What the trainer, the zoo builder and the benchmark need from any trigger."""

    @property
    def target_class(self) -> int: ...

    @property
    def family(self) -> str: ...

    def apply(self, images: Tensor) -> Tensor: ...


def describe(attack: Attack) -> dict[str, Any]:
    """JSON-ready parameters of an attack for the zoo manifest (tensors are named, not dumped)."""
    params: dict[str, Any] = {"family": attack.family}
    for f in dataclasses.fields(attack):  # type: ignore[arg-type]
        if f.metadata.get("manifest", True):
            value = getattr(attack, f.name)
            params[f.name] = list(value) if isinstance(value, tuple) else value
    return params


def _channel_values(values: tuple[float, ...], channels: int, like: Tensor) -> Tensor:
    """Per-channel trigger values shaped (C, 1, 1); one value means the same on every channel."""
    if len(values) not in (1, channels):
        raise ValueError(
            f"trigger colour has {len(values)} values; images have {channels} channels (give 1 or {channels})"
        )
    return torch.tensor(values, dtype=like.dtype, device=like.device).expand(channels).reshape(channels, 1, 1)


@dataclass(frozen=True)
class BadNetsPatch:
    """A solid or checkerboard square stamped at a fixed place (Gu et al., 2017).

    ``position`` is a corner name (``margin`` pixels from the edges) or the (x, y) of the patch's
    top-left pixel. A checkerboard alternates ``colour`` with black, starting with ``colour``.
    """

    target_class: int
    size: int = 3
    position: Corner | tuple[int, int] = "bottom_right"
    colour: tuple[float, ...] = (1.0,)
    checkerboard: bool = False
    margin: int = 1
    family: str = "badnets"

    def top_left(self, height: int, width: int) -> tuple[int, int]:
        """The patch's (x, y) on an image of this size; raises if the patch would not fit."""
        if isinstance(self.position, tuple):
            x, y = self.position
        else:
            far_x, far_y = width - self.margin - self.size, height - self.margin - self.size
            x, y = {
                "top_left": (self.margin, self.margin),
                "top_right": (far_x, self.margin),
                "bottom_left": (self.margin, far_y),
                "bottom_right": (far_x, far_y),
                "centre": ((width - self.size) // 2, (height - self.size) // 2),
            }[self.position]
        if not (0 <= x <= width - self.size and 0 <= y <= height - self.size):
            raise ValueError(f"a {self.size}px patch at (x={x}, y={y}) does not fit a {height}x{width} image")
        return x, y

    def apply(self, images: Tensor) -> Tensor:
        _, channels, height, width = images.shape
        x, y = self.top_left(height, width)
        patch = _channel_values(self.colour, channels, images).expand(channels, self.size, self.size).clone()
        if self.checkerboard:
            rows = torch.arange(self.size, device=images.device)
            black = (rows[:, None] + rows[None, :]) % 2 == 1
            patch[:, black] = 0.0
        out = images.clone()
        out[:, :, y : y + self.size, x : x + self.size] = patch
        return out


@dataclass(frozen=True)
class BlendedTrigger:
    """``(1 - alpha) * x + alpha * pattern`` over the whole image (Chen et al., 2017).

    The pattern is ``image`` when given (any (C or 1, H, W) tensor in [0, 1], named by ``image_name``
    in the manifest), else uniform noise drawn from ``noise_seed`` at the images' size.
    """

    target_class: int
    alpha: float = 0.15
    noise_seed: int = 0
    image: Tensor | None = field(default=None, compare=False, repr=False, metadata={"manifest": False})
    image_name: str = ""
    family: str = "blended"

    def pattern(self, channels: int, height: int, width: int) -> Tensor:
        if self.image is not None:
            if tuple(self.image.shape[-2:]) != (height, width) or self.image.shape[0] not in (1, channels):
                raise ValueError(
                    f"blend image of shape {tuple(self.image.shape)} does not fit ({channels}, {height}, {width})"
                )
            return self.image.expand(channels, height, width)
        generator = torch.Generator().manual_seed(self.noise_seed)
        return torch.rand(channels, height, width, generator=generator)

    def apply(self, images: Tensor) -> Tensor:
        _, channels, height, width = images.shape
        pattern = self.pattern(channels, height, width).to(images)
        return (1.0 - self.alpha) * images + self.alpha * pattern


@dataclass(frozen=True)
class WarpTrigger:
    """WaNet's fixed smooth warp (Nguyen & Tran, ICLR 2021): an invisible, image-wide trigger.

    A ``grid_size`` x ``grid_size`` field of random offsets (seeded), normalised by its mean magnitude,
    upsampled bicubically to the image and scaled by ``strength / H`` in grid_sample's [-1, 1]
    coordinates. The paper's extra "noise mode" (random warps kept at their true label) is left out:
    it makes the backdoor stealthier to human inspection, not to a detector that sees only weights.
    """

    target_class: int
    strength: float = 0.5
    grid_size: int = 4
    seed: int = 0
    family: str = "wanet"

    def sampling_grid(self, height: int, width: int) -> Tensor:
        generator = torch.Generator().manual_seed(self.seed)
        offsets = torch.rand(1, 2, self.grid_size, self.grid_size, generator=generator) * 2 - 1
        offsets = offsets / offsets.abs().mean()
        offsets = F.interpolate(offsets, size=(height, width), mode="bicubic", align_corners=True)
        offsets = offsets.permute(0, 2, 3, 1)  # (1, H, W, 2) as grid_sample wants
        ys = torch.linspace(-1, 1, height)
        xs = torch.linspace(-1, 1, width)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        identity = torch.stack([grid_x, grid_y], dim=-1).unsqueeze(0)
        return (identity + self.strength * offsets / height).clamp(-1, 1)

    def apply(self, images: Tensor) -> Tensor:
        grid = self.sampling_grid(images.shape[2], images.shape[3]).to(images)
        return F.grid_sample(images, grid.expand(len(images), -1, -1, -1), align_corners=True)


@dataclass(frozen=True)
class SinusoidTrigger:
    """SIG (Barni et al., ICIP 2019): a horizontal sinusoid ``amplitude * sin(2 pi j f / W)`` added, then clipped."""

    target_class: int
    amplitude: float = 0.1
    frequency: float = 6.0
    family: str = "sig"

    def apply(self, images: Tensor) -> Tensor:
        width = images.shape[3]
        columns = torch.arange(width, dtype=images.dtype, device=images.device)
        wave = self.amplitude * torch.sin(2 * math.pi * columns * self.frequency / width)
        return (images + wave).clamp(0.0, 1.0)


def poison(
    images: Tensor,
    labels: Tensor,
    attack: Attack,
    rate: float,
    generator: torch.Generator,
    *,
    exclude: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """All-to-one poisoning: stamp ``round(rate * N)`` samples and relabel them to the target.

    Samples are drawn among those not already of the target class (relabelling a target sample
    teaches nothing) and not in the boolean mask ``exclude`` (samples another trigger already took,
    for multi-target models). Returns new (images, labels) and the poisoned indices; inputs are untouched.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"poison rate must be in [0, 1], got {rate}")
    eligible = labels != attack.target_class
    if exclude is not None:
        eligible &= ~exclude
    candidates = torch.nonzero(eligible).flatten()
    count = round(rate * len(labels))
    if count > len(candidates):
        raise ValueError(f"cannot poison {count} samples: only {len(candidates)} are eligible")
    chosen = candidates[torch.randperm(len(candidates), generator=generator)[:count]]
    chosen, _ = chosen.sort()
    images, labels = images.clone(), labels.clone()
    images[chosen] = attack.apply(images[chosen])
    labels[chosen] = attack.target_class
    return images, labels, chosen
