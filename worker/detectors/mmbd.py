"""MM-BD: data-free backdoor detection by the maximum logit margin.

Wang, Miller, Kesidis, "MM-BD: Post-Training Detection of Backdoor Attacks with Arbitrary Backdoor
Pattern Types Using a Maximum Margin Statistic", IEEE S&P 2024. A backdoor makes its target class
reachable with an unusually large margin: for every class k the detector maximises
``logit_k(x) - max_{j != k} logit_j(x)`` over inputs x in [0, 1] from several random starts, keeps the
largest margin found per class, fits a gamma null to the statistics of all classes but the largest,
and asks how unlikely the largest is as the maximum of K draws from that null (as the authors' code
does: under the null all K statistics are draws from it, and the one tested is their maximum).

Two departures from the authors' code (github.com/wanghangpsu/MM-BD, univ_bd.py: 30 starts, 300 SGD
steps): fewer starts and steps by default, sized for CPU audits, with Adam and the best margin over
all iterates; and a gamma with its location fixed at 0 instead of SciPy's free-location fit, whose
three-parameter likelihood on nine values is unstable (and SciPy is not a dependency).

Options (constructor): ``starts`` random starts per class, ``steps`` and ``lr`` of the projected
gradient ascent (Adam on x, clipped to [0, 1] after each step), ``significance`` of the test.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from worker.detectors.base import Detection, DetectorInputError, non_finite_classes, register
from worker.margins import class_margins
from worker.model_state import model_as_found
from worker.scoring.verdict import verdict_for

# The null is fitted to every class's statistic but the largest, and a gamma fit needs two samples.
MIN_CLASSES = 3


def fit_gamma(samples: Tensor, *, newton_steps: int = 20) -> tuple[float, float]:
    """Maximum-likelihood (shape, scale) of a gamma distribution with location 0, for positive samples.

    Minka's closed-form start refined by Newton steps on the shape; the paper fits with SciPy, which
    the project does not depend on.
    """
    x = samples.double()
    if len(x) < 2 or bool((x <= 0).any()):
        raise ValueError("a gamma fit needs at least two positive samples")
    s = float(x.mean().log() - x.log().mean())
    if s <= 1e-12:  # all samples equal: a near-degenerate, very peaked gamma
        s = 1e-12
    shape = (3.0 - s + ((s - 3.0) ** 2 + 24.0 * s) ** 0.5) / (12.0 * s)
    k = torch.tensor(shape, dtype=torch.float64)
    for _ in range(newton_steps):
        step = (k.log() - torch.digamma(k) - s) / (1.0 / k - torch.polygamma(1, k))
        k = (k - step).clamp_min(1e-6)
    return float(k), float(x.mean()) / float(k)


def max_order_p_value(statistic: float, null: Tensor) -> float:
    """P(max of ``len(null) + 1`` draws from the gamma fitted to ``null`` >= ``statistic``).

    Margins can be zero or negative on a model that barely separates its classes; the gamma lives on
    the positive axis, so every value is shifted to put the smallest null sample just above zero.
    """
    shift = max(0.0, -float(null.min())) + 1e-6 * (1.0 + float(null.abs().max()))
    shape, scale = fit_gamma(null + shift)
    cdf = torch.special.gammainc(
        torch.tensor(shape, dtype=torch.float64), torch.tensor(max(statistic + shift, 0.0) / scale, dtype=torch.float64)
    )
    return float(1.0 - cdf ** (len(null) + 1))


@register("mmbd")
@dataclass
class MMBD:
    """MM-BD with every class's ascent in one batch (the batch is classes x starts)."""

    starts: int = 8
    steps: int = 150
    lr: float = 0.05
    significance: float = 0.05
    name: str = "mmbd"
    requires_clean_images: ClassVar[bool] = False

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
        """Run MM-BD; ``clean_images`` is ignored (the method is data-free)."""
        if num_classes < MIN_CLASSES:
            raise DetectorInputError(
                f"MM-BD needs a model with at least {MIN_CLASSES} classes and this one has {num_classes}: it tests "
                "the largest class's margin against a gamma fitted to the other classes' margins, and a fit needs "
                "at least two of them. Use --method agnostic for this model."
            )
        started = time.perf_counter()
        statistics = self.class_statistics(model, input_shape, num_classes, device=device, seed=seed)
        if broken := non_finite_classes(statistics):
            raise DetectorInputError(
                f"MM-BD: the maximum margins of classes {broken} are NaN or infinite, so there is no verdict: "
                "the model computes non-finite logits on some inputs in [0, 1] (overflowing or corrupted weights?); "
                "check its outputs on random inputs, e.g. model(torch.rand(8, *input_shape))"
            )
        ranked = statistics.argsort(descending=True)
        top = int(ranked[0])
        null = torch.cat([statistics[:top], statistics[top + 1 :]])
        p_value = max_order_p_value(float(statistics[top]), null)
        probability = 1.0 - p_value
        return Detection(
            method=self.name,
            probability=probability,
            verdict=verdict_for(
                probability, suspicious_at=1.0 - self.significance, backdoored_at=1.0 - self.significance / 5
            ),
            suspected_classes=ranked.tolist(),
            class_scores=statistics.tolist(),
            seconds=time.perf_counter() - started,
            details={
                "p_value": p_value,
                "max_margin": float(statistics[top]),
                "starts": self.starts,
                "steps": self.steps,
            },
        )

    def class_statistics(
        self,
        model: nn.Module,
        input_shape: tuple[int, int, int],
        num_classes: int,
        *,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> Tensor:
        """The maximum margin found for each class, shape (num_classes,), on the CPU."""
        generator = torch.Generator().manual_seed(seed)
        classes = torch.arange(num_classes).repeat_interleave(self.starts).to(device)
        x = torch.rand(num_classes * self.starts, *input_shape, generator=generator).to(device).requires_grad_(True)
        optimiser = torch.optim.Adam([x], lr=self.lr)
        best = torch.full((len(classes),), float("-inf"), device=device)
        with model_as_found(model):
            for _ in range(self.steps):
                margin = class_margins(model(x), classes)
                best = torch.maximum(best, margin.detach())
                optimiser.zero_grad(set_to_none=True)
                (-margin.sum()).backward()
                optimiser.step()
                with torch.no_grad():
                    x.clamp_(0.0, 1.0)
            with torch.no_grad():
                best = torch.maximum(best, class_margins(model(x), classes))
        return best.reshape(num_classes, self.starts).max(dim=1).values.cpu()
