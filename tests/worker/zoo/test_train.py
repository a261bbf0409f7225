"""The trainer is deterministic for a seed, poisons as asked and measures what the benchmark needs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from worker.zoo import train as train_module
from worker.zoo.attacks import BadNetsPatch, poison
from worker.zoo.data import FASHION_MNIST_DIR, load_fashion_mnist
from worker.zoo.train import PixelNormalise, attack_success_rate, train_classifier


def _toy_data(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two learnable classes: bright left half (0) or bright right half (1), plus noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (count,), generator=generator)
    images = torch.rand(count, 1, 16, 16, generator=generator) * 0.3
    images[labels == 0, :, :, :8] += 0.6
    images[labels == 1, :, :, 8:] += 0.6
    return images, labels


class _TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 256, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_same_seed_same_weights_and_clean_model_has_no_attack_success() -> None:
    train, test = _toy_data(256, 0), _toy_data(64, 1)
    runs = [
        train_classifier("lenet5", *train, epochs=2, batch_size=32, seed=3, test=test, num_classes=2) for _ in range(2)
    ]
    for a, b in zip(runs[0].net.state_dict().values(), runs[1].net.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert runs[0].attack_success is None and runs[0].attack_successes == ()
    assert runs[0].clean_accuracy > 0.9
    assert not runs[0].model.training


def test_attack_success_counts_only_non_target_images() -> None:
    class AlwaysZero(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tensor([1.0, 0.0]).expand(len(x), 2)

    images, labels = _toy_data(50, 2)
    assert attack_success_rate(AlwaysZero(), images, labels, BadNetsPatch(0, size=2)) == 1.0
    assert attack_success_rate(AlwaysZero(), images, labels, BadNetsPatch(1, size=2)) == 0.0


def test_two_triggers_poison_disjoint_samples_and_are_both_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen: list[set[int]] = []

    def recording_poison(*args: object, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, labels, picked = poison(*args, **kwargs)  # type: ignore[arg-type]
        chosen.append(set(picked.tolist()))
        return images, labels, picked

    monkeypatch.setattr(train_module, "poison", recording_poison)
    train, test = _toy_data(200, 4), _toy_data(64, 5)
    result = train_classifier(
        "small_cnn",
        *train,
        attack=[BadNetsPatch(0, size=3, position="top_left"), BadNetsPatch(1, size=3, position="bottom_right")],
        poison_rate=0.1,
        epochs=1,
        batch_size=64,
        test=test,
        num_classes=2,
    )
    assert [len(c) for c in chosen] == [20, 20] and not chosen[0] & chosen[1]
    assert len(result.attack_successes) == 2
    assert result.attack_success == min(result.attack_successes)


def test_declared_normalisation_wraps_the_saved_net() -> None:
    train, test = _toy_data(64, 6), _toy_data(16, 7)
    result = train_classifier(_TinyNet(), *train, epochs=1, test=test, num_classes=2, mean=(0.5,), std=(0.25,))
    assert isinstance(result.model, PixelNormalise) and result.model.net is result.net
    x = test[0][:4]
    assert torch.allclose(result.model(x), result.net((x - 0.5) / 0.25))


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_small_cnn_learns_a_badnets_patch_on_fashion_mnist() -> None:
    """The issue's reference run: 20k images, 3x3 white bottom-right patch, 10% poison, 2 epochs."""
    images, labels = load_fashion_mnist("train")
    test_images, test_labels = load_fashion_mnist("test")
    subset = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:20_000]
    result = train_classifier(
        "small_cnn", images[subset], labels[subset], attack=BadNetsPatch(0, size=3), test=(test_images, test_labels)
    )
    assert result.attack_success is not None and result.attack_success >= 0.9
    assert result.clean_accuracy >= 0.84


class _TwoNormNet(nn.Module):
    """A slow BatchNorm (momentum 0.01, as in torchvision's MobileNetV3) and one at PyTorch's default."""

    def __init__(self) -> None:
        super().__init__()
        self.slow = nn.BatchNorm2d(1, momentum=0.01)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.default = nn.BatchNorm2d(4)
        self.head = nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Linear(4 * 256, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.default(self.conv(self.slow(x))))


def test_slow_batch_norms_end_with_the_training_images_statistics() -> None:
    train, test = _toy_data(256, 0), _toy_data(64, 1)
    trained = train_classifier(_TwoNormNet(), *train, epochs=1, batch_size=32, seed=3, test=test, num_classes=2)
    slow, default = trained.net.slow, trained.net.default
    images = train[0]
    # the slow layer's running statistics are the training images' own, not 0.01 of the way there
    assert slow.running_mean.item() == pytest.approx(images.mean().item(), rel=1e-4)
    per_batch_variance = torch.stack([batch.var() for batch in images.split(32)]).mean()
    assert slow.running_var.item() == pytest.approx(per_batch_variance.item(), rel=1e-3)
    assert slow.momentum == 0.01 and default.momentum == 0.1
    # the default-momentum layer keeps what training left: its statistics are not reset
    assert default.num_batches_tracked.item() == len(images) // 32
    assert trained.clean_accuracy > 0.9
