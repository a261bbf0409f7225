"""Input-agnostic saliency maps (Akhtar & Jalwana, "Rethinking interpretation: Input-agnostic saliency
mapping of deep visual classifiers", AAAI 2023), as reconstructed in DESIGN.md section 2.

For every class l a perturbation rho_l is grown from zero: at each step a fresh batch of random seeds
is pushed toward l, the mean input gradient of the loss is taken, and rho_l moves one normalised step
against it before being projected back onto the norm-bounded surface. The accumulated rho_l is the map:
what the model, independent of any image, treats as class l. All classes and restarts run in one batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from worker.margins import class_margins
from worker.model_state import model_as_found
from worker.saliency.config import SaliencyConfig
from worker.saliency.seeds import draw_seeds

Progress = Callable[[int, int], None]

# Inputs per forward pass of the fidelity test. On the CPU a small CNN's forward pass costs twice as
# much per input in batches of 1,020 as in batches of 160, whose activations stay in the core's cache
# (scratch timing, bench/MEASUREMENT_LOG.md, "The nineteenth session's build"); larger nets are flat in between.
FIDELITY_BATCH = 160


@dataclass
class ClassMap:
    """The map of one class. ``raw`` is the perturbation itself (C, H, W, pixel units, on the CPU)."""

    class_index: int
    raw: torch.Tensor
    restarts: torch.Tensor  # (R, C, H, W): each restart's map before they are merged
    success_rate: float  # fidelity: fraction of fresh seeds x with argmax K(x + raw) == class_index
    stability: float  # mean pairwise cosine similarity of the restarts' maps (1.0 with one restart)
    trace: list[float]  # mean probability of the class on the step's seeds, one value per step


def budget(config: SaliencyConfig, numel: int) -> float:
    """The radius eta of the projection in the config's norm."""
    return config.radius * math.sqrt(numel) if config.norm == "l2" else config.radius


def project(rho: torch.Tensor, config: SaliencyConfig) -> torch.Tensor:
    """Psi_{p,eta}: project each map (the last three dims) onto the sphere or into the ball of radius eta."""
    eta = budget(config, rho.shape[-3:].numel())
    if config.norm == "linf":
        if config.surface == "ball":
            return rho.clamp(-eta, eta)
        peak = rho.abs().amax(dim=(-3, -2, -1), keepdim=True).clamp_min(1e-12)
        return rho * (eta / peak)
    norms = rho.flatten(-3).norm(dim=-1)[..., None, None, None].clamp_min(1e-12)
    scale = eta / norms if config.surface == "sphere" else (eta / norms).clamp(max=1.0)
    return rho * scale


def _class_loss(logits: torch.Tensor, targets: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "ce":
        return F.cross_entropy(logits, targets, reduction="none")
    return -class_margins(logits, targets)


class _AdamMoments:
    """Bias-corrected Adam moments of the gradient (the paper-style step; see the config's comment)."""

    def __init__(self, shape: torch.Size, device: torch.device) -> None:
        self.m = torch.zeros(shape, device=device)
        self.v = torch.zeros(shape, device=device)
        self.t = 0

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        self.t += 1
        self.m.mul_(0.9).add_(grad, alpha=0.1)
        self.v.mul_(0.999).addcmul_(grad, grad, value=0.001)
        m_hat = self.m / (1 - 0.9**self.t)
        v_hat = self.v / (1 - 0.999**self.t)
        return m_hat / (v_hat.sqrt() + 1e-8)


def _draw(
    config: SaliencyConfig, generators: list[torch.Generator], shape: tuple[int, ...], device: torch.device
) -> torch.Tensor:
    """Seeds shaped (R, K, n, C, H, W); class k's come from its own generator, whatever its batch-mates."""
    r, _, n, *image = shape
    per_class = [draw_seeds(config.seed_distribution, (r, n, *image), generator=g, device=device) for g in generators]
    return torch.stack(per_class, dim=1)


def _optimise(
    model: nn.Module,
    rho: torch.Tensor,
    classes: torch.Tensor,
    config: SaliencyConfig,
    *,
    steps: int,
    step_size: float,
    generators: list[torch.Generator],
    on_step: Callable[[torch.Tensor], None],
) -> torch.Tensor:
    """Run ``steps`` projected steps on rho (R, K, C, H, W) toward ``classes`` (K,). After each step
    ``on_step`` gets the mean probability of each restart's class on the step's seeds, shaped (R, K)."""
    r, k = rho.shape[:2]
    b = config.seeds_per_step
    targets = classes.repeat_interleave(b).repeat(r)  # order matches (R, K, b) flattened
    moments = _AdamMoments(rho.shape, rho.device) if config.step_rule == "adam" else None
    for _ in range(steps):
        seeds = _draw(config, generators, (r, k, b, *rho.shape[2:]), rho.device)
        rho_var = rho.detach().requires_grad_(True)
        logits = model((seeds + rho_var[:, :, None]).flatten(0, 2))
        losses = _class_loss(logits, targets, config.loss)
        # summed over classes and restarts (they are independent of each other), averaged over seeds
        (grad,) = torch.autograd.grad(losses.sum() / b, rho_var)
        with torch.no_grad():
            on_step(logits.softmax(dim=1).gather(1, targets[:, None]).view(r, k, b).mean(dim=2))
            phi = moments.direction(grad) if moments is not None else grad
            peak = phi.abs().amax(dim=(-3, -2, -1), keepdim=True).clamp_min(1e-12)
            rho = project(rho - step_size * phi / peak, config)
    return rho.detach()


@torch.no_grad()
def _success_rates(
    model: nn.Module,
    rho: torch.Tensor,
    classes: torch.Tensor,
    config: SaliencyConfig,
    generators: list[torch.Generator],
) -> torch.Tensor:
    """Fraction of fresh seeds that rho_k sends to class k, per class; rho is (K, C, H, W)."""
    k = len(classes)
    hits = torch.zeros(k, device=rho.device)
    remaining = config.fidelity_seeds
    while remaining > 0:
        n = min(remaining, max(1, FIDELITY_BATCH // k))
        seeds = _draw(config, generators, (1, k, n, *rho.shape[1:]), rho.device)[0]
        predictions = model((seeds + rho[:, None]).flatten(0, 1)).argmax(dim=1).view(k, n)
        hits += (predictions == classes[:, None]).float().sum(dim=1)
        remaining -= n
    return hits / config.fidelity_seeds


def _merge_restarts(restarts: torch.Tensor, quality: torch.Tensor, config: SaliencyConfig) -> torch.Tensor:
    """The refine phase's start (1, K, C, H, W) from the restarts (R, K, C, H, W): their mean; per class
    the restart of highest ``quality`` (R, K), its mean class probability over the last steps; or the
    mean of the restarts that point the best one's way (cosine > 0 with it, the best one included)."""
    if config.restart_merge == "mean":
        return project(restarts.mean(dim=0, keepdim=True), config)
    classes = torch.arange(restarts.shape[1], device=restarts.device)
    best = restarts[quality.argmax(dim=0), classes]  # (K, C, H, W)
    if config.restart_merge == "best":
        return best[None]
    flat = F.normalize(restarts.flatten(2), dim=-1)
    aligned = ((flat * F.normalize(best.flatten(1), dim=-1)).sum(dim=-1) > 0).float()  # (R, K)
    weights = aligned / aligned.sum(dim=0).clamp_min(1)
    return project((restarts * weights[..., None, None, None]).sum(dim=0, keepdim=True), config)


def _stability(restarts: torch.Tensor) -> torch.Tensor:
    """Mean pairwise cosine similarity between restarts, per class; restarts is (R, K, C, H, W)."""
    r = restarts.shape[0]
    if r == 1:
        return torch.ones(restarts.shape[1])
    flat = F.normalize(restarts.flatten(2), dim=-1)  # (R, K, n)
    sims = torch.einsum("rkn,skn->krs", flat, flat)
    off_diagonal = sims.sum(dim=(1, 2)) - sims.diagonal(dim1=1, dim2=2).sum(dim=1)
    return off_diagonal / (r * (r - 1))


def _maps_for_chunk(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    chunk: list[int],
    config: SaliencyConfig,
    device: torch.device,
    tick: Callable[[], None],
) -> list[ClassMap]:
    classes = torch.tensor(chunk, device=device)
    generators = []
    for class_index in chunk:
        g = torch.Generator(device=device)
        g.manual_seed(config.seed * 1_000_003 + class_index)
        generators.append(g)
    steps: list[torch.Tensor] = []  # (R, K) per step: each restart's class probability (R = 1 when refining)

    def record(probability: torch.Tensor) -> None:
        steps.append(probability)
        tick()

    rho = torch.zeros((config.restarts, len(chunk), *input_shape), device=device)
    restarts = _optimise(
        model,
        rho,
        classes,
        config,
        steps=config.iterations,
        step_size=config.step_size,
        generators=generators,
        on_step=record,
    )
    # refine: merge the restarts, then a short fine phase at a quarter of the step size
    quality = torch.stack(steps[-config.quality_steps :]).mean(dim=0)
    refined = _optimise(
        model,
        _merge_restarts(restarts, quality, config),
        classes,
        config,
        steps=config.refine_iterations,
        step_size=config.step_size / 4,
        generators=generators,
        on_step=record,
    )[0]
    success = _success_rates(model, refined, classes, config, generators)
    stability = _stability(restarts.cpu())
    traces = torch.stack([probability.mean(dim=0) for probability in steps], dim=1).tolist()  # (K, steps)
    return [
        ClassMap(
            class_index=class_index,
            raw=refined[i].cpu(),
            restarts=restarts[:, i].cpu(),
            success_rate=float(success[i]),
            stability=float(stability[i]),
            trace=traces[i],
        )
        for i, class_index in enumerate(chunk)
    ]


def compute_class_maps(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    num_classes: int,
    config: SaliencyConfig | None = None,
    *,
    classes: list[int] | None = None,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
) -> list[ClassMap]:
    """Compute the input-agnostic map of each class in ``classes`` (default: all ``num_classes``).

    ``model`` takes pixels in [0, 1] shaped (N, *input_shape) and returns logits, and must already be
    on ``device``. It is left as found: every module's training flag restored, no hooks, parameters
    untouched. Results are deterministic for a fixed ``config.seed`` on one device, and a class's map
    does not depend on which classes share its batch: each class draws seeds from its own generator.
    ``progress(done, total)`` is called once per optimisation step.
    """
    config = config or SaliencyConfig()
    device = torch.device(device)
    wanted = list(range(num_classes)) if classes is None else list(classes)
    if not wanted or min(wanted) < 0 or max(wanted) >= num_classes:
        raise ValueError(f"classes must be indices in [0, {num_classes}), got {classes}")
    chunks = [wanted[i : i + config.class_batch] for i in range(0, len(wanted), config.class_batch)]
    total = (config.iterations + config.refine_iterations) * len(chunks)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    maps: list[ClassMap] = []
    with model_as_found(model):
        for chunk in chunks:
            maps.extend(_maps_for_chunk(model, input_shape, chunk, config, device, tick))
    return maps
