"""Hand-built models with a known answer: which class is reachable by a tiny trigger, and which is not."""

from __future__ import annotations

import pytest
import torch
from torch import nn

NUM_CLASSES = 10
INPUT_SHAPE = (1, 8, 20)  # a 2 x 5 grid of 4 x 4 cells, one per class


class RegionModel(nn.Module):
    """Class k's logit is about 6 x the mean brightness of cell k: flipping to k means painting its 16 pixels.

    The per-class factors differ a little, as real classes do, so that the clean statistics have a spread.

    With ``backdoor_target`` set, a 2 x 2 white patch at the bottom-right corner adds about 40 to that
    class's logit: the target then needs a 4-pixel mask where every other class needs about 16.
    A BatchNorm (unused in the math while in eval mode) lets tests check the mode is restored.
    """

    def __init__(self, backdoor_target: int | None = None) -> None:
        super().__init__()
        self.backdoor_target = backdoor_target
        self.scale = nn.Parameter(torch.tensor([6.0, 6.4, 5.8, 6.9, 6.2, 7.1, 6.6, 5.9, 6.3, 6.7]))
        self.norm = nn.BatchNorm1d(NUM_CLASSES, affine=False, track_running_stats=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cells = x.reshape(len(x), 1, 2, 4, 5, 4).mean(dim=(1, 3, 5)).reshape(len(x), NUM_CLASSES)
        logits = self.scale * cells
        if self.training:
            logits = self.norm(logits)
        if self.backdoor_target is not None:
            patch = x[:, :, -2:, -2:].mean(dim=(1, 2, 3))
            bump = 40.0 * torch.sigmoid(12.0 * (patch - 0.85))  # smooth, as a trained net's would be
            logits = logits + bump[:, None] * nn.functional.one_hot(torch.tensor(self.backdoor_target), NUM_CLASSES).to(
                x
            )
        return logits


def region_images(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose label's cell is bright (0.6) on a dim noisy background (<= 0.2)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % NUM_CLASSES
    images = torch.rand(count, *INPUT_SHAPE, generator=generator) * 0.2
    for i, label in enumerate(labels.tolist()):
        row, col = divmod(label, 5)
        images[i, :, row * 4 : row * 4 + 4, col * 4 : col * 4 + 4] = 0.6
    return images, labels


@pytest.fixture
def backdoored_model() -> RegionModel:
    return RegionModel(backdoor_target=7)


@pytest.fixture
def clean_model() -> RegionModel:
    return RegionModel()
