"""What pinning the zoo's kernels costs: one planned model trained natively and pinned.

``zoo build`` pins the code paths of torch, oneDNN and MKL (``worker.zoo.provenance.pin_kernels``)
so that a recipe trains to the same bits on any kind of machine. Each model trains in a fresh process per
setting (a pin holds only before torch's first op), one thread, and the row gives the training seconds,
the kernels torch ran and the sha256 of the saved weights, to compare with a build's manifest.
``--mkl-branch`` (repeatable) adds a pinned row with MKL's branch set otherwise (``unset``: no
``MKL_CBWR``): on an Intel CPU each ISA branch gives its own bits, on others MKL runs its AUTO branch
whatever is set. MKL takes a value it does not know for AUTO without a word (``STRICT`` alone gave the
``unset`` row's bits), so a row's label is what was set, not necessarily what ran.
``--cpu-model`` (repeatable) adds a pinned row trained under QEMU's user-mode emulator presenting that
CPU model (``qemu-x86_64 -cpu NAME``; ``qemu-x86_64 -cpu help`` lists them): its vendor, features and
cache sizes, which is what the libraries dispatch on, with every instruction computed to the IEEE rule.
So one machine can check that the pin gives an Intel and an AMD CPU the same bits, slowly: emulated,
the gray small_cnn s0 trained in 34 min against 27 s (beside two zoo builders on 2 cores).
Usage: python bench/kernel_pin.py [--models ID,ID,...] [--mkl-branch AVX2 ...] [--cpu-model Cascadelake-Server-v3 ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
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
QEMU = "qemu-x86_64"


def train_one(model_id: str, kernels: str, mkl_branch: str | None) -> dict[str, object]:
    """In this (fresh) process: pin if asked (MKL to ``mkl_branch`` if given), train the planned model,
    hash its saved weights. MKL reads its branch at its first call, after the pin's check."""
    if kernels == "pinned":
        pin_kernels()
        if mkl_branch == "unset":
            del os.environ["MKL_CBWR"]
        elif mkl_branch is not None:
            os.environ["MKL_CBWR"] = mkl_branch
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
    parser.add_argument(
        "--mkl-branch",
        action="append",
        default=[],
        help="an MKL_CBWR value (or 'unset') for an extra pinned row, e.g. AVX2 or AVX2,STRICT; repeatable "
        "(MKL runs a value it does not know as AUTO, silently)",
    )
    parser.add_argument(
        "--cpu-model",
        action="append",
        default=[],
        help=f"a QEMU CPU model (e.g. Cascadelake-Server-v3, EPYC-Rome-v2) for an extra pinned row trained under "
        f"`{QEMU} -cpu MODEL`; repeatable",
    )
    parser.add_argument("--train", metavar="ID", help=argparse.SUPPRESS)  # the child's side
    parser.add_argument("--kernels", choices=SETTINGS, default="native", help=argparse.SUPPRESS)
    parser.add_argument("--mkl-cbwr", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.train:
        print(json.dumps(train_one(args.train, args.kernels, args.mkl_cbwr)))
        return 0
    runs: list[tuple[str, str | None, str | None]] = [(kernels, None, None) for kernels in SETTINGS]
    runs += [("pinned", branch, None) for branch in args.mkl_branch]
    runs += [("pinned", None, cpu_model) for cpu_model in args.cpu_model]
    if args.cpu_model and shutil.which(QEMU) is None:
        print("error: --cpu-model needs QEMU's user-mode emulator: apt-get install qemu-user", file=sys.stderr)
        return 2
    model_ids = args.models.split(",")
    unknown = sorted(set(model_ids) - {m.id for m in plan()})
    if unknown:
        print(f"error: not planned model ids: {', '.join(unknown)}", file=sys.stderr)
        return 2
    # the native child must not inherit switches set in this shell
    env = {name: value for name, value in os.environ.items() if name not in PINNED_KERNELS}
    env["PYTHONPATH"] = str(REPO)
    print("| model | CPU | kernels | MKL_CBWR | torch runs | train s | sha256 |")
    print("|---|---|---|---|---|---|---|")
    for model_id in model_ids:
        for kernels, mkl_branch, cpu_model in runs:
            command = [QEMU, "-cpu", cpu_model] if cpu_model else []
            command += [sys.executable, __file__, "--train", model_id, "--kernels", kernels]
            if mkl_branch is not None:
                command += ["--mkl-cbwr", mkl_branch]
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                print(done.stderr.strip().splitlines()[-1], file=sys.stderr)
                return 2
            row = json.loads(done.stdout)
            branch = mkl_branch or (PINNED_KERNELS["MKL_CBWR"] if kernels == "pinned" else "unset")
            print(
                f"| {model_id} | {cpu_model or 'this one'} | {kernels} | {branch} | {row['capability']} "
                f"| {row['seconds']:.0f} | {row['sha256'][:10]} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
