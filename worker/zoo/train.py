"""Train one clean or backdoored classifier, deterministically for a seed, on CPU-sized budgets.

The zoo builder calls this once per model. What it returns is measured the way the benchmark needs
it: clean accuracy on the clean test set and attack success on the test images that are *not* of
the target class, stamped with the trigger (a target image classified as the target proves nothing).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worker.files import replacing
from worker.loading.registry import build
from worker.zoo.attacks import Attack, poison


class PixelNormalise(nn.Module):
    """Wraps a net that expects normalised inputs so that the wrapper takes pixels in [0, 1].

    Checkpoints store the inner net with their declared mean/std (DESIGN.md section 5); the audit
    folds the same normalisation back in, so training through this wrapper matches what is audited.
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.net = net
        self.mean: Tensor
        self.std: Tensor
        self.register_buffer("mean", torch.tensor(list(mean)).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std)).reshape(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - self.mean) / self.std)


@dataclass
class TrainedModel:
    """A trained classifier and how well it does its two jobs.

    ``model`` takes pixels in [0, 1] (eval mode, CPU); ``net`` is the architecture's own module, the
    one whose state_dict is saved (the same object as ``model`` when no normalisation was declared).
    ``attack_success`` is the smallest success over the planted triggers (None for a clean model);
    ``attack_successes`` lists each trigger's (the manifest records both).
    """

    model: nn.Module
    net: nn.Module
    clean_accuracy: float
    attack_success: float | None
    attack_successes: tuple[float, ...]
    seconds: float


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` (already in eval mode) on the given images."""
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(images[start : start + batch_size])
        correct += int((logits.argmax(1) == labels[start : start + batch_size]).sum())
    return correct / max(len(images), 1)


def attack_success_rate(model: nn.Module, images: Tensor, labels: Tensor, attack: Attack) -> float:
    """Fraction of non-target test images that the trigger sends to the target class."""
    keep = labels != attack.target_class
    stamped = attack.apply(images[keep])
    return accuracy(model, stamped, torch.full((len(stamped),), attack.target_class, dtype=torch.long))


# Running statistics that follow the batches more slowly than this are stale after a short schedule.
STALE_MOMENTUM = 0.1


def _reestimate_slow_batch_norms(model: nn.Module, images: Tensor, batch_size: int) -> None:
    """Re-estimate the running mean and variance of BatchNorm layers with a momentum under 0.1, as an
    exact average over the training images (in order, no gradient), the layers' momentum kept.

    torchvision's MobileNetV3 (momentum 0.01) and MNASNet (0.0003) barely move their running
    statistics from their initial values in the zoo's 190-step schedule: a mobilenet_v3_small that
    reached 0.82 clean accuracy this way scored 0.10 in eval mode without it, which is why it was
    thought not to learn at 32x32. Layers at PyTorch's default 0.1 (the zoo's resnet18, shufflenet
    and small_resnet) are left alone, so their weights stay as they were trained before.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    slow = [m for m in norms if m.momentum is not None and m.momentum < STALE_MOMENTUM]
    if not slow:
        return
    momenta = [m.momentum for m in slow]
    for layer in slow:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average over the batches that follow
    for layer in norms:
        if layer not in slow:
            layer.eval()  # the other layers normalise with what training left them, and keep it
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            model(images[start : start + batch_size])
    for layer, momentum in zip(slow, momenta, strict=True):
        layer.momentum = momentum
    model.train()


def train_classifier(
    arch_name_or_module: str | nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    attack: Attack | Sequence[Attack] | None = None,
    poison_rate: float = 0.1,
    epochs: int = 2,
    batch_size: int = 128,
    lr: float = 3e-2,
    seed: int = 0,
    test: tuple[Tensor, Tensor],
    num_classes: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> TrainedModel:
    """Train with Adam on (images, labels), poisoned by ``attack`` at ``poison_rate`` each, and measure it.

    The default schedule (one-cycle, peak lr 3e-2) reached 0.853 clean accuracy and 0.986 attack
    success for a SmallCNN on 20k Fashion-MNIST images with a 3x3 BadNets patch in 2 epochs
    (1e-2: 0.825; 2e-2: 0.841).

    Several attacks (a multi-target backdoor) each poison ``poison_rate`` of the data, on disjoint
    samples. Same seed, same data and same thread count give the same weights. ``mean``/``std``
    declare the net's input normalisation (see ``PixelNormalise``).
    """
    started = time.perf_counter()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    attacks: list[Attack] = [] if attack is None else [attack] if not isinstance(attack, Sequence) else list(attack)

    taken = torch.zeros(len(labels), dtype=torch.bool)
    for each in attacks:
        images, labels, chosen = poison(images, labels, each, poison_rate, generator, exclude=taken)
        taken[chosen] = True

    net = (
        build(arch_name_or_module, num_classes=num_classes, in_channels=images.shape[1])
        if isinstance(arch_name_or_module, str)
        else (arch_name_or_module)
    )
    model: nn.Module = PixelNormalise(net, mean, std) if mean is not None and std is not None else net
    # fused: the unfused Adam takes its square roots from MKL's vector library, whose bits depend on the
    # CPU (16,839 of 100,000 float square roots not correctly rounded on an AMD Zen 4, 15,222 under
    # QEMU's EPYC-Rome); the fused kernel uses the vector sqrt instruction, correctly rounded everywhere.
    # So the pinned weights are the same on Intel and AMD (provenance.py; BENCHMARKS.md "The zoo").
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    steps = epochs * ((len(images) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=max(steps, 1))
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), batch_size):
            batch = order[start : start + batch_size]
            optimiser.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(images[batch]), labels[batch])
            loss.backward()
            optimiser.step()
            schedule.step()
    _reestimate_slow_batch_norms(model, images, batch_size)
    model.eval()

    test_images, test_labels = test
    successes = tuple(attack_success_rate(model, test_images, test_labels, each) for each in attacks)
    return TrainedModel(
        model=model,
        net=net,
        clean_accuracy=accuracy(model, test_images, test_labels),
        attack_success=min(successes) if successes else None,
        attack_successes=successes,
        seconds=time.perf_counter() - started,
    )


def save_weights(net: nn.Module, path: Path) -> None:
    """Save ``net``'s weights as the safetensors file that ``scan --arch`` reads; through a temporary
    file, so an interrupted save never leaves a truncated model where one is expected."""
    from safetensors.torch import save_file

    with replacing(path) as tmp:
        save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(tmp))
