"""Numeric and contract tests of the map engine on tiny models with known answers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from worker.saliency.config import SaliencyConfig
from worker.saliency.engine import _merge_restarts, budget, compute_class_maps, project

FAST = SaliencyConfig(iterations=25, refine_iterations=5, restarts=2, seeds_per_step=4, fidelity_seeds=16)
SHAPE = (1, 6, 6)


def tiny_cnn(num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, num_classes)
    )


def test_two_class_linear_model_map_is_the_weight_difference_direction() -> None:
    # For logits W x + b, grad_x CE(., l) = -(1 - p_l)(w_l - w_o) for every seed: the step direction never
    # changes, so the projected map is exactly eta * (w_l - w_o) / ||w_l - w_o||_2.
    torch.manual_seed(1)
    linear = nn.Linear(36, 2)
    model = nn.Sequential(nn.Flatten(), linear)
    config = SaliencyConfig(iterations=10, refine_iterations=2, restarts=1, seeds_per_step=8)
    maps = compute_class_maps(model, SHAPE, 2, config)
    eta = config.radius * math.sqrt(36)
    for class_index, other in ((0, 1), (1, 0)):
        direction = (linear.weight[class_index] - linear.weight[other]).detach()
        expected = eta * direction / direction.norm()
        assert torch.allclose(maps[class_index].raw.flatten(), expected, atol=1e-5), "map is not the closed form"


@pytest.mark.parametrize("surface", ["sphere", "ball"])
def test_l2_projection_invariants(surface: str) -> None:
    config = SaliencyConfig(norm="l2", surface=surface, radius=0.1)
    eta = 0.1 * math.sqrt(36)
    rho = torch.randn(2, 3, *SHAPE) * 5
    projected = project(rho, config)
    assert torch.allclose(projected.flatten(2).norm(dim=-1), torch.full((2, 3), eta), atol=1e-5)
    small = torch.randn(3, *SHAPE) * 1e-3
    inside = project(small, config)
    if surface == "ball":
        assert torch.equal(inside, small), "the ball leaves points inside it alone"
    else:
        assert torch.allclose(inside.flatten(1).norm(dim=-1), torch.full((3,), eta), atol=1e-5)


def test_linf_projection_invariants() -> None:
    rho = torch.randn(3, *SHAPE)
    sphere = project(rho, SaliencyConfig(norm="linf", surface="sphere", radius=0.05))
    ball = project(rho, SaliencyConfig(norm="linf", surface="ball", radius=0.05))
    assert torch.allclose(sphere.flatten(1).abs().amax(dim=1), torch.full((3,), 0.05))
    assert ball.abs().max() <= 0.05 + 1e-7
    assert torch.equal(torch.sign(sphere), torch.sign(rho)), "scaling onto the l-inf sphere keeps signs"


def test_batched_equals_unbatched() -> None:
    model = tiny_cnn()
    together = compute_class_maps(model, SHAPE, 3, FAST)
    for class_index in range(3):
        (alone,) = compute_class_maps(model, SHAPE, 3, FAST, classes=[class_index])
        assert alone.class_index == class_index
        assert torch.allclose(alone.raw, together[class_index].raw, atol=1e-5), f"class {class_index} differs"
        assert alone.success_rate == together[class_index].success_rate


def test_same_seed_same_map_and_another_seed_another_map() -> None:
    model = tiny_cnn()
    first = compute_class_maps(model, SHAPE, 3, FAST)
    second = compute_class_maps(model, SHAPE, 3, FAST)
    other = compute_class_maps(model, SHAPE, 3, SaliencyConfig(**{**FAST.to_dict(), "seed": 7}))
    assert all(torch.equal(a.raw, b.raw) for a, b in zip(first, second, strict=True))
    assert not torch.allclose(first[0].raw, other[0].raw, atol=1e-4)


def test_model_is_left_as_found() -> None:
    model = tiny_cnn()
    model.train()
    model[1].eval()  # a submodule in its own mode must keep it
    model[0].bias.requires_grad_(False)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    running_mean = model[1].running_mean.clone()
    compute_class_maps(model, SHAPE, 3, FAST)
    assert model.training and model[0].training and not model[1].training
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
    assert all(p.grad is None for p in model.parameters()), "no gradient may be left on the weights"
    assert torch.equal(model[1].running_mean, running_mean), "batch-norm statistics must not move"
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_map_outputs_and_progress() -> None:
    calls: list[tuple[int, int]] = []
    maps = compute_class_maps(tiny_cnn(), SHAPE, 3, FAST, progress=lambda done, total: calls.append((done, total)))
    total = FAST.iterations + FAST.refine_iterations
    assert calls[-1] == (total, total) and len(calls) == total
    for class_map in maps:
        assert class_map.raw.shape == SHAPE and class_map.restarts.shape == (2, *SHAPE)
        assert 0.0 <= class_map.success_rate <= 1.0
        assert -1.0 <= class_map.stability <= 1.0 + 1e-6
        assert len(class_map.trace) == total
        assert float(class_map.raw.norm()) <= budget(FAST, math.prod(SHAPE)) * (1 + 1e-4), "the map leaves the ball"


def test_class_batches_cover_many_classes_in_chunks() -> None:
    model = tiny_cnn(num_classes=5)
    chunked = compute_class_maps(model, SHAPE, 5, SaliencyConfig(**{**FAST.to_dict(), "class_batch": 2}))
    whole = compute_class_maps(model, SHAPE, 5, FAST)
    assert [m.class_index for m in chunked] == list(range(5))
    assert all(torch.allclose(a.raw, b.raw, atol=1e-5) for a, b in zip(chunked, whole, strict=True))


@pytest.mark.parametrize(
    "options",
    [
        {"step_rule": "adam"},
        {"seed_distribution": "gaussian"},
        {"seed_distribution": "lowfreq"},
        {"loss": "margin"},
        {"restart_merge": "mean"},
        {"restart_merge": "best"},
    ],
)
def test_every_tunable_runs_and_raises_the_class_probability(options: dict[str, str]) -> None:
    config = SaliencyConfig(**{**FAST.to_dict(), "iterations": 40, "radius": 0.5, **options})
    maps = compute_class_maps(tiny_cnn(), SHAPE, 3, config)
    assert all(m.trace[-1] >= m.trace[0] - 1e-6 for m in maps), "the class probability should not fall"


class SignBlindClass(nn.Module):
    """Class 1's logit is 4 (w . (x - 0.5))^2: reached as well along +w as along -w, like a checkerboard
    trigger that fires in either phase. Restarts pick a sign by chance, and opposite signs cancel in a mean."""

    def __init__(self) -> None:
        super().__init__()
        self.w = F.normalize(torch.randn(36, generator=torch.Generator().manual_seed(0)), dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.flatten(1) - 0.5) @ self.w
        return torch.stack([torch.ones_like(z), 4 * z**2], dim=1)


@pytest.mark.parametrize("merge", ["best", "aligned"])
def test_restarts_of_opposite_sign_keep_the_best_one_instead_of_cancelling(merge: str) -> None:
    model = SignBlindClass()
    # with seed 1 the two restarts of class 1 end at +w and -w (checked by their stability of -1)
    configs = {m: SaliencyConfig(**{**FAST.to_dict(), "seed": 1, "restart_merge": m}) for m in ("mean", merge)}
    merged = {m: compute_class_maps(model, SHAPE, 2, config)[1] for m, config in configs.items()}
    eta = budget(FAST, math.prod(SHAPE))
    assert merged[merge].stability < -0.99, "the case needs restarts of opposite sign"
    assert float(merged["mean"].raw.norm()) < 0.1 * eta, "the mean of opposite restarts cancels"
    kept = merged[merge].raw.flatten()
    assert float(kept.norm()) > 0.99 * eta and abs(float(F.cosine_similarity(kept, model.w, dim=0))) > 0.99
    assert merged[merge].success_rate > merged["mean"].success_rate


def test_aligned_restarts_are_averaged_and_opposed_ones_dropped() -> None:
    # class 0: restart 1 opposes restart 0, the better one; class 1: both point one way, restart 1 better
    restarts = torch.randn(2, 2, *SHAPE) * 0.01
    restarts[1, 0] = -restarts[0, 0]
    restarts[1, 1] = 0.5 * restarts[0, 1]
    quality = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
    merged = _merge_restarts(restarts, quality, SaliencyConfig(restart_merge="aligned"))[0]
    assert torch.allclose(merged[0], restarts[0, 0]), "an opposed restart must not enter the mean"
    assert torch.allclose(merged[1], 0.75 * restarts[0, 1]), "restarts that agree are averaged"
    best = _merge_restarts(restarts, quality, SaliencyConfig(restart_merge="best"))[0]
    assert torch.equal(best[1], restarts[1, 1]), "best keeps the restart of highest class probability"


def test_invalid_classes_are_refused() -> None:
    with pytest.raises(ValueError, match="classes must be indices"):
        compute_class_maps(tiny_cnn(), SHAPE, 3, FAST, classes=[3])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_in_direction_and_is_deterministic() -> None:
    model = tiny_cnn()
    cpu = compute_class_maps(model, SHAPE, 3, FAST)
    gpu_model = tiny_cnn().cuda()
    first = compute_class_maps(gpu_model, SHAPE, 3, FAST, device="cuda")
    second = compute_class_maps(gpu_model, SHAPE, 3, FAST, device="cuda")
    assert all(torch.allclose(a.raw, b.raw, atol=1e-5) for a, b in zip(first, second, strict=True))
    # CPU and CUDA draw different random numbers; both must still produce maps of the same budget
    assert all(
        math.isclose(float(a.raw.norm()), float(b.raw.norm()), rel_tol=1e-4) for a, b in zip(cpu, first, strict=True)
    )
