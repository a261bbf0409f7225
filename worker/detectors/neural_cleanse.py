"""Neural Cleanse: reverse-engineer the smallest trigger per class, flag an outlier small one.

Wang et al., "Neural Cleanse: Identifying and Mitigating Backdoor Attacks in Neural Networks", IEEE
S&P 2019. For every class t a mask m (H x W, in [0, 1]) and a pattern p (C x H x W, in [0, 1]) are
optimised so that ``(1 - m) * x + m * p`` sends clean images x to t, with an L1 penalty on m whose
weight adapts (raised while the trigger works, lowered while it does not). A backdoor's target needs
a much smaller mask than the other classes: the anomaly index of the mask L1 norms, computed with the
median absolute deviation (consistency constant 1.4826), flags the small side above 2.

All classes are optimised in one batch (classes x images). The defaults are sized for CPU audits
(200 steps of 10 images per class, about a minute for a small CNN on one core); the paper runs
several epochs over its clean set. Options (constructor): ``steps``, ``lr``
(Adam on the unconstrained mask and pattern), ``batch_size`` clean images per class per step,
``initial_cost``, ``cost_factor``, ``patience`` (consecutive steps a class's trigger must work, or
fail, before its L1 weight is raised, or lowered; ``adjust_cost``) and
``success_threshold`` (the fraction of flipped images that counts as a working trigger).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worker.detectors.base import Detection, DetectorInputError, non_finite_classes, register
from worker.model_state import model_as_found
from worker.scoring.verdict import anomaly_index, verdict_for

ANOMALY_THRESHOLD = 2.0  # the paper's flag: anomaly index above 2 (about 95% confidence)


def small_side_anomaly_index(norms: Tensor) -> Tensor:
    """``(median - x) / (1.4826 * MAD)`` per class: positive when a class's mask is unusually small."""
    return anomaly_index(-norms, floor=1e-12)  # the small side of the norms is the large side of -norms


def adjust_cost(
    cost: Tensor, works: Tensor, successes: Tensor, failures: Tensor, *, patience: int, factor: float
) -> tuple[Tensor, Tensor, Tensor]:
    """One step of the paper's L1-weight schedule, per class (the authors' ``visualizer.py``): count the
    consecutive steps whose trigger worked (``works``) or failed; after ``patience`` successes in a row
    multiply the class's cost by ``factor`` (a smaller mask may work too), after ``patience`` failures in
    a row divide it by ``factor ** 1.5`` (the trigger needs room), and start that count again. A class
    whose trigger works on some steps and fails on others keeps its cost.

    Returns the new (cost, successes, failures).
    """
    successes = torch.where(works, successes + 1, 0)
    failures = torch.where(works, 0, failures + 1)
    up, down = successes >= patience, failures >= patience
    cost = torch.where(up, cost * factor, torch.where(down, cost / factor**1.5, cost))
    return cost, torch.where(up, 0, successes), torch.where(down, 0, failures)


@register("neural-cleanse")
@dataclass
class NeuralCleanse:
    """Neural Cleanse with every class's mask and pattern optimised in one batch."""

    steps: int = 200
    lr: float = 0.1
    batch_size: int = 10
    initial_cost: float = 1e-3
    cost_factor: float = 1.5
    patience: int = 10
    success_threshold: float = 0.99
    name: str = "neural-cleanse"
    requires_clean_images: ClassVar[bool] = True

    def detect(
        self,
        model: nn.Module,
        input_shape: tuple[int, int, int],
        num_classes: int,
        *,
        device: str | torch.device = "cpu",
        clean_images: Tensor | None = None,
        seed: int = 0,
    ) -> Detection:
        """Run Neural Cleanse on ``clean_images`` (a few per class is enough; 20-100 in total)."""
        if clean_images is None or len(clean_images) == 0:
            raise DetectorInputError(
                "Neural Cleanse needs a few clean images (pass clean_images, or --clean-images DIR_OR_NPZ "
                "on the command line); use the data-free methods 'mmbd' or 'agnostic' when you have none."
            )
        if tuple(clean_images.shape[1:]) != tuple(input_shape):
            raise DetectorInputError(
                f"clean images are shaped {tuple(clean_images.shape[1:])}, the model takes {tuple(input_shape)}."
            )
        started = time.perf_counter()
        norms, success = self.mask_norms(model, clean_images, num_classes, device=device, seed=seed)
        if broken := non_finite_classes(norms):
            raise DetectorInputError(
                f"Neural Cleanse: the mask norms of classes {broken} are NaN or infinite, so there is no "
                "verdict: the model computes non-finite logits or gradients on the clean images or their stamped "
                "copies (overflowing or corrupted weights?); check its outputs on the clean images"
            )
        index = small_side_anomaly_index(norms)
        ranked = index.argsort(descending=True)
        top_index = float(index[ranked[0]])
        # A logistic in the anomaly index, 0.5 at the paper's threshold of 2; uncalibrated by design
        # (the benchmark's cross-entropy column says how well it matches reality).
        probability = 1.0 / (1.0 + math.exp(-2.0 * (top_index - ANOMALY_THRESHOLD)))
        return Detection(
            method=self.name,
            probability=probability,
            verdict=verdict_for(probability, suspicious_at=0.5, backdoored_at=1.0 / (1.0 + math.exp(-2.0))),
            suspected_classes=ranked.tolist(),
            class_scores=index.tolist(),
            seconds=time.perf_counter() - started,
            details={
                "anomaly_index": top_index,
                "mask_l1": norms.tolist(),
                "trigger_success": success.tolist(),
                "steps": self.steps,
            },
        )

    def mask_norms(
        self,
        model: nn.Module,
        clean_images: Tensor,
        num_classes: int,
        *,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> tuple[Tensor, Tensor]:
        """Per class: the L1 norm of the smallest working mask found, and its success on the images.

        A class whose trigger never reached ``success_threshold`` reports its last mask, whose
        norm is then an upper bound that can only make the class look less suspicious.
        """
        generator = torch.Generator().manual_seed(seed)
        channels, height, width = clean_images.shape[1:]
        images = clean_images.to(device)
        mask_logit = torch.zeros(num_classes, 1, 1, height, width, device=device, requires_grad=True)
        pattern_logit = (torch.rand(num_classes, 1, channels, height, width, generator=generator) * 2 - 1).to(device)
        pattern_logit.requires_grad_(True)
        optimiser = torch.optim.Adam([mask_logit, pattern_logit], lr=self.lr, betas=(0.5, 0.9))
        cost = torch.full((num_classes,), self.initial_cost, device=device)
        targets = torch.arange(num_classes, device=device).repeat_interleave(self.batch_size)
        best_norm = torch.full((num_classes,), float("inf"), device=device)
        best_success = torch.zeros(num_classes, device=device)
        successes = torch.zeros(num_classes, dtype=torch.long, device=device)  # consecutive steps, per class
        failures = torch.zeros(num_classes, dtype=torch.long, device=device)
        last_norm = torch.zeros(num_classes, device=device)
        last_success = torch.zeros(num_classes, device=device)
        with model_as_found(model):
            for _ in range(self.steps):
                pick = torch.randint(len(images), (self.batch_size,), generator=generator).to(device)
                x = images[pick].unsqueeze(0)  # (1, B, C, H, W), shared by every class
                mask = torch.sigmoid(mask_logit)
                stamped = (1 - mask) * x + mask * torch.sigmoid(pattern_logit)
                logits = model(stamped.reshape(-1, channels, height, width))
                ce = F.cross_entropy(logits, targets, reduction="none").reshape(num_classes, -1).mean(1)
                l1 = mask.sum(dim=(1, 2, 3, 4))
                optimiser.zero_grad(set_to_none=True)
                (ce + cost * l1).sum().backward()
                optimiser.step()
                with torch.no_grad():
                    success = (logits.argmax(1) == targets).float().reshape(num_classes, -1).mean(1)
                    works = success >= self.success_threshold
                    improved = works & (l1 < best_norm)
                    best_norm = torch.where(improved, l1, best_norm)
                    best_success = torch.where(improved, success, best_success)
                    last_norm, last_success = l1.detach(), success
                    cost, successes, failures = adjust_cost(
                        cost, works, successes, failures, patience=self.patience, factor=self.cost_factor
                    )
        found = torch.isfinite(best_norm)
        norms = torch.where(found, best_norm, last_norm)
        success = torch.where(found, best_success, last_success)
        return norms.cpu(), success.cpu()
