"""``backdoor-audit zoo build``: train the project's model zoo (clean and backdoored models, with ground truth)."""

from __future__ import annotations

import argparse
import fnmatch
from pathlib import Path

from app.cli.common import CommandError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "zoo",
        help="build the model zoo the detection benchmark runs on",
        description="Train reproducible clean and backdoored classifiers on Fashion-MNIST and MNIST digits.",
    )
    actions = parser.add_subparsers(dest="zoo_command", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build",
        help="train every planned model not yet in DIR/manifest.json (resumable)",
        description="Train the zoo into DIR: models/<id>.safetensors and manifest.json with the ground truth. "
        "An interrupted build resumes where it stopped, and builders may share DIR, each skipping the models "
        "another is training: on two CPU cores, two builders with --threads 1 side by side build the full zoo "
        "in 30-100 minutes, by machine and load (50-186 CPU-minutes, measured); --quick (six small models) "
        "takes a few minutes.",
    )
    build.add_argument("--out", type=Path, required=True, metavar="DIR", help="zoo folder (created if missing)")
    build.add_argument("--quick", action="store_true", help="the quick zoo: a handful of small models")
    build.add_argument(
        "--only",
        metavar="PATTERN",
        help="only model ids matching this glob, e.g. 'rgb-*', and the clean twins their backdoored models are judged "
        "against",
    )
    build.add_argument(
        "--split",
        choices=("dev", "test"),
        help="only this split's models, and the clean twins its backdoored models are judged against",
    )
    build.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    build.add_argument(
        "--kernels",
        choices=("pinned", "native"),
        default="pinned",
        help="pinned (default): torch's and oneDNN's AVX2 kernels and MKL's vendor-neutral branch, so a recipe "
        "trains to the same bits across kinds of machine (resnet18 trains about half as fast on AVX-512 "
        "machines); native: this CPU's fastest kernels (the weights then depend on the kind of machine)",
    )
    build.set_defaults(handler=run_build)


def run_build(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from worker.zoo.build import ManifestError, TrainingError, build_zoo
    from worker.zoo.data import DatasetError
    from worker.zoo.plan import plan
    from worker.zoo.provenance import KernelPinError, build_hash, pin_kernels

    if args.threads is not None:
        if args.threads < 1:
            raise CommandError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.kernels == "pinned":  # before the plan, whose seeded positions are torch's first ops
        try:
            pin_kernels()
        except KernelPinError as exc:
            raise CommandError(f"{exc}; pass --kernels native to train with this machine's own") from exc
    selected = [m for m in plan(quick=args.quick) if args.only is None or fnmatch.fnmatch(m.id, args.only)]
    if not selected:
        raise CommandError(
            f"--only {args.only!r} matches no planned model id (ids look like 'gray-mnist-clean-lenet5-s0')"
        )
    if args.split and not any(m.split == args.split for m in selected):
        matching = f" matching --only {args.only!r}" if args.only else ""
        raise CommandError(f"no planned model{matching} is in the {args.split} split")
    try:
        manifest = build_zoo(
            args.out,
            quick=args.quick,
            only=args.only,
            split=args.split,
            progress=lambda steps, total: tqdm(steps, total=total, desc="training zoo", unit="model"),
        )
    except DatasetError as exc:
        raise CommandError(str(exc)) from exc
    except ManifestError as exc:  # the folder holds another builder's manifest, or a damaged one
        raise CommandError(f"{exc}; remove the folder or pick another --out") from exc
    except TrainingError as exc:  # the recipe or the training code, not the folder: a rerun resumes after the fix
        raise CommandError(f"{exc}; the models built so far stay in {args.out}, and a rerun resumes") from exc
    kept, rejected = len(manifest["models"]), len(manifest["rejected"])
    build = build_hash(manifest["models"])
    print(f"{kept} models in {args.out / 'manifest.json'}, build {build} ({rejected} backdoored models rejected)")
    return 0
