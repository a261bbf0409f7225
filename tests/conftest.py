"""Session-wide fixtures: real Fashion-MNIST models trained by the suite itself, once per run.

A BadNets model (3x3 white patch in the bottom-right corner, 10% of training images poisoned, all to one
target) and its clean twin (same architecture, data and seed, no poison) are trained on first use and
cached on disk under ``.cache/test-models`` (``BACKDOOR_AUDIT_TEST_CACHE``), keyed by their recipe, so a
developer's second run does not train again. CI starts from a fresh clone and trains them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("BACKDOOR_AUDIT_TEST_CACHE", REPO / ".cache" / "test-models"))

BADNETS_TARGET = 3
# cheap audit settings for tests that exercise plumbing rather than detection quality
FAST_AUDIT_CONFIG: dict[str, Any] = {
    "saliency": {"iterations": 20, "refine_iterations": 5, "restarts": 1, "seeds_per_step": 8, "fidelity_seeds": 16}
}


@dataclass(frozen=True)
class ZooCheckpoint:
    """A trained model saved as safetensors, with what a user would declare about it."""

    path: Path
    arch: str
    input_shape: tuple[int, int, int]
    num_classes: int
    target_class: int | None
    clean_accuracy: float
    attack_success: float | None

    def cli_args(self) -> list[str]:
        shape = ",".join(str(v) for v in self.input_shape)
        return [str(self.path), "--arch", self.arch, "--input-shape", shape, "--num-classes", str(self.num_classes)]


def _train_fashion_mnist(name: str, *, backdoored: bool) -> ZooCheckpoint:
    recipe = {
        "name": name, "arch": "small_cnn", "train": 20000, "epochs": 2, "seed": 0, "poison_rate": 0.1,
        "attack": {"size": 3, "position": "bottom_right", "colour": 1.0, "target": BADNETS_TARGET} if backdoored else None,
    }  # fmt: skip
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    path = CACHE / f"{name}-{key}.safetensors"
    meta_path = path.with_suffix(".json")
    if not (path.is_file() and meta_path.is_file()):
        import torch
        from safetensors.torch import save_file

        from worker.zoo.attacks import BadNetsPatch
        from worker.zoo.data import load_fashion_mnist
        from worker.zoo.train import train_classifier

        torch.manual_seed(0)
        images, labels = load_fashion_mnist("train")
        test_images, test_labels = load_fashion_mnist("test")
        attack = BadNetsPatch(target_class=BADNETS_TARGET, size=3, position="bottom_right") if backdoored else None
        trained = train_classifier(
            "small_cnn", images[: recipe["train"]], labels[: recipe["train"]], attack=attack,
            poison_rate=recipe["poison_rate"], epochs=recipe["epochs"], seed=recipe["seed"],
            test=(test_images[:2000], test_labels[:2000]),
        )  # fmt: skip
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in trained.net.state_dict().items()}, str(tmp))
        tmp.replace(path)
        meta = {"clean_accuracy": trained.clean_accuracy, "attack_success": trained.attack_success}
        meta_path.write_text(json.dumps(meta))
    meta = json.loads(meta_path.read_text())
    return ZooCheckpoint(
        path=path,
        arch="small_cnn",
        input_shape=(1, 28, 28),
        num_classes=10,
        target_class=BADNETS_TARGET if backdoored else None,
        clean_accuracy=meta["clean_accuracy"],
        attack_success=meta["attack_success"],
    )


@pytest.fixture(scope="session")
def badnets_checkpoint() -> ZooCheckpoint:
    """Fashion-MNIST SmallCNN with a 3x3 white BadNets patch to class 3 (attack success >= 0.9 asserted)."""
    checkpoint = _train_fashion_mnist("fmnist-badnets", backdoored=True)
    assert checkpoint.attack_success is not None and checkpoint.attack_success >= 0.9, checkpoint
    return checkpoint


@pytest.fixture(scope="session")
def clean_checkpoint() -> ZooCheckpoint:
    """The BadNets model's clean twin: same architecture, data, seed and schedule, no poison."""
    return _train_fashion_mnist("fmnist-clean", backdoored=False)
