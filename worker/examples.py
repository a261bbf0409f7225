"""The example models of the quick start and the test suite: a Fashion-MNIST SmallCNN with a BadNets
trigger (3x3 white patch, bottom-right corner, 10% of training images relabelled to one target) and its
clean twin (same data, seed and schedule, no poison). Trained on first use (about a minute on two CPU
cores) and cached on disk by recipe, so the second use is instant."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.files import write_text_atomically

EXAMPLE_TARGET = 3  # "Dress"
ARCH = "small_cnn"
INPUT_SHAPE = (1, 28, 28)
NUM_CLASSES = 10


@dataclass(frozen=True)
class ExampleModel:
    """A trained example saved as safetensors, with what a user would declare about it."""

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


def _recipe(backdoored: bool) -> dict[str, Any]:
    attack = {"size": 3, "position": "bottom_right", "colour": 1.0, "target": EXAMPLE_TARGET}
    return {
        "arch": ARCH,
        "train": 20000,
        "epochs": 2,
        "lr": 3e-2,
        "seed": 0,
        "poison_rate": 0.1,
        "attack": attack if backdoored else None,
    }


def example_model(cache_dir: Path, *, backdoored: bool) -> ExampleModel:
    """Return the example, training and caching it first if ``cache_dir`` does not hold it yet."""
    recipe = _recipe(backdoored)
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    name = "fmnist-badnets" if backdoored else "fmnist-clean"
    path = cache_dir / f"{name}-{key}.safetensors"
    meta_path = path.with_suffix(".json")
    if not (path.is_file() and meta_path.is_file()):
        _train(recipe, path, meta_path)
    meta = json.loads(meta_path.read_text())
    return ExampleModel(
        path=path,
        arch=ARCH,
        input_shape=INPUT_SHAPE,
        num_classes=NUM_CLASSES,
        target_class=EXAMPLE_TARGET if backdoored else None,
        clean_accuracy=meta["clean_accuracy"],
        attack_success=meta["attack_success"],
    )


def _train(recipe: dict[str, Any], path: Path, meta_path: Path) -> None:
    from worker.zoo.attacks import BadNetsPatch
    from worker.zoo.data import load_fashion_mnist
    from worker.zoo.train import save_weights, train_classifier

    images, labels = load_fashion_mnist("train")
    test_images, test_labels = load_fashion_mnist("test")
    attack = recipe["attack"]
    trained = train_classifier(
        ARCH,
        images[: recipe["train"]],
        labels[: recipe["train"]],
        attack=BadNetsPatch(target_class=attack["target"], size=attack["size"], position=attack["position"])
        if attack
        else None,
        poison_rate=recipe["poison_rate"],
        epochs=recipe["epochs"],
        lr=recipe["lr"],
        seed=recipe["seed"],
        test=(test_images[:2000], test_labels[:2000]),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    save_weights(trained.net, path)
    write_text_atomically(
        meta_path,
        json.dumps({"clean_accuracy": trained.clean_accuracy, "attack_success": trained.attack_success}),
    )
