"""What pinning the zoo's kernels costs: one planned model trained natively and pinned.

``zoo build`` pins the code paths of torch, oneDNN and MKL (``worker.zoo.provenance.pin_kernels``)
so that a recipe trains to the same bits on any kind of machine. Each model trains in a fresh process per
setting (a pin holds only before torch's first op), one thread, and the row gives the training seconds,
the kernels torch ran and the sha256 of the saved weights, to compare with a build's manifest.
Usage: python bench/kernel_pin.py [--models ID,ID,...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from worker.zoo.build import train_zoo_model  # noqa: E402
from worker.zoo.plan import plan  # noqa: E402
from worker.zoo.provenance import PINNED_KERNELS, pin_kernels  # noqa: E402
from worker.zoo.train import save_weights  # noqa: E402

DEFAULT_MODELS = (
    "rgb-fashion_mnist_rgb-clean-resnet18-s0,rgb-fashion_mnist_rgb-clean-mobilenet_v3_small-s0,"
    "gray-fashion_mnist-clean-small_cnn-s0"
)
SETTINGS = ("native", "pinned")


def train_one(model_id: str, kernels: str) -> dict[str, object]:
    """In this (fresh) process: pin if asked, train the planned model, hash its saved weights."""
    if kernels == "pinned":
        pin_kernels()
    torch.set_num_threads(1)
    model = next(m for m in plan() if m.id == model_id)
    trained = train_zoo_model(model)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "weights.safetensors"
        save_weights(trained.net, path)
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"seconds": trained.seconds, "capability": torch.backends.cpu.get_cpu_capability(), "sha256": sha256}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/kernel_pin.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated planned model ids")
    parser.add_argument("--train", metavar="ID", help=argparse.SUPPRESS)  # the child's side
    parser.add_argument("--kernels", choices=SETTINGS, default="native", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.train:
        print(json.dumps(train_one(args.train, args.kernels)))
        return 0
    model_ids = args.models.split(",")
    unknown = sorted(set(model_ids) - {m.id for m in plan()})
    if unknown:
        print(f"error: not planned model ids: {', '.join(unknown)}", file=sys.stderr)
        return 2
    # the native child must not inherit switches set in this shell
    env = {name: value for name, value in os.environ.items() if name not in PINNED_KERNELS}
    env["PYTHONPATH"] = str(REPO)
    print("| model | kernels | torch runs | train s | sha256 |")
    print("|---|---|---|---|---|")
    for model_id in model_ids:
        for kernels in SETTINGS:
            done = subprocess.run(
                [sys.executable, __file__, "--train", model_id, "--kernels", kernels],
                capture_output=True,
                text=True,
                env=env,
            )
            if done.returncode != 0:
                print(done.stderr.strip().splitlines()[-1], file=sys.stderr)
                return 2
            row = json.loads(done.stdout)
            print(f"| {model_id} | {kernels} | {row['capability']} | {row['seconds']:.0f} | {row['sha256'][:10]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
