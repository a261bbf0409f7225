"""``backdoor-audit scan MODEL``: audit a checkpoint on this machine, no servers."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from app.cli.common import EXIT_CLEAN, EXIT_FLAGGED, CommandError, borderline_note
from app.cli.options import add_model_options, json_object

FORMATS_HELP = """accepted checkpoints:
  .safetensors state_dict       with --arch NAME (see `backdoor-audit archs`)
  .pt/.pth/.bin state_dict      loaded with weights_only=True after a pickle scan; needs --arch
  TorchScript archive           (torch.jit.save); input shape via --input-shape
  torch.export program (.pt2)   input shape recorded in the program
  ONNX                          small CNN op set, converted to a differentiable module
The format is detected from the bytes, not the file name.

exit codes: 0 clean, 1 suspicious or backdoored, 2 error (one line on stderr says why)."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "scan",
        help="audit a checkpoint locally and write report.json, report.html and the maps",
        description="Compute an input-agnostic saliency map for every class and score the maps for backdoor "
        "trigger signatures.",
        epilog=FORMATS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", type=Path, help="checkpoint file")
    add_model_options(parser)
    parser.add_argument("--out", type=Path, default=Path("audit-out"), help="output folder (default: audit-out)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same maps")
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        metavar="N",
        help="audit with seeds S..S+N-1 (S = --seed) and report the run at the median P(backdoored); N odd "
        "(default: 1); --method agnostic only",
    )
    parser.add_argument(
        "--config",
        type=json_object,
        help='audit config: inline JSON, e.g. \'{"saliency": {"iterations": 60}}\', or the path of a .json file',
    )
    parser.add_argument(
        "--method",
        choices=("agnostic", "mmbd", "neural-cleanse"),
        default="agnostic",
        help="agnostic (default: our data-free maps), or a second opinion: mmbd (data-free) or "
        "neural-cleanse (needs --clean-images); baselines write no maps",
    )
    parser.add_argument(
        "--clean-images",
        type=Path,
        metavar="DIR_OR_NPZ",
        help="a few clean images: required by --method neural-cleanse; with agnostic, candidate triggers are also "
        "stamped onto them in the transfer test",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    _check_seeds(args)
    # torch is imported here, not at module import, so other commands stay fast
    from app.reports.html import render_report_html
    from worker.allocator import retain_freed_memory
    from worker.audit import resolve_device
    from worker.config import AuditConfig
    from worker.loading import load_checkpoint
    from worker.loading.types import CheckpointError, ModelSpec

    retain_freed_memory()
    try:
        config = AuditConfig.from_dict(args.config)
        _with_seed(config, args.seed + args.seeds - 1)  # the last seed of --seeds checked before any work
        config = _with_seed(config, args.seed)
        device = resolve_device(args.device)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    spec = ModelSpec(
        input_shape=args.input_shape,
        num_classes=args.num_classes,
        arch=args.arch,
        mean=args.mean,
        std=args.std,
        class_names=args.class_names,
    )
    _check_out_dir(args.out)
    try:
        loaded = load_checkpoint(args.model, spec, device=device)
    except CheckpointError as exc:
        raise CommandError(str(exc)) from None

    clean_images = _clean_images(args, loaded, device)
    if args.method == "agnostic":
        report, images = _agnostic(args, loaded, config, device, clean_images)
    else:
        report, images = _second_opinion(args, loaded, device, clean_images), {}
    _write_outputs(args.out, report, images, render_report_html(report, images))
    suspects = ", ".join(str(k) for k in report["suspected_classes"]) or "none"
    median_of = f", median of {args.seeds} seeds" if args.seeds > 1 else ""
    print(
        f"{report['verdict']}: P(backdoored)={report['probability']:.2f}, suspected classes: {suspects} "
        f"({report['seconds']:.1f} s, {args.method}{median_of}) -> {args.out / 'report.html'}"
    )
    if report["borderline"] and "seeds" in report:
        flagged = sum(entry["verdict"] != "clean" for entry in report["seeds"])
        print(
            f"note: the seeds disagree: {flagged} of {len(report['seeds'])} flag the model; the verdict is the "
            f"median run's (seed {report['config']['saliency']['seed']})",
            file=sys.stderr,
        )
    elif report["borderline"]:
        note = borderline_note(
            probability=report["probability"],
            suspicious_at=config.scoring.suspicious_at,
            seed=args.seed,
            seed_option="--seed",
            seeds_option="--seeds",
        )
        print(note, file=sys.stderr)
    return EXIT_CLEAN if report["verdict"] == "clean" else EXIT_FLAGGED


def _check_seeds(args: argparse.Namespace) -> None:
    """--seeds N before any work: the median of an even number of runs is none of them, and the
    baselines have no saliency seed to vary."""
    if args.seeds < 1 or args.seeds % 2 == 0:
        raise CommandError(
            f"--seeds {args.seeds}: the verdict is the median run's, so use an odd number of seeds (1, 3, 5, ...)"
        )
    if args.seeds > 1 and args.method != "agnostic":
        raise CommandError(
            f"--seeds {args.seeds} repeats our saliency method with other seeds; it does not apply to "
            f"--method {args.method} (drop --seeds, or use --method agnostic)"
        )


def _with_seed(config: Any, seed: int) -> Any:
    """The audit config with its saliency seed set to ``seed``."""
    return dataclasses.replace(config, saliency=dataclasses.replace(config.saliency, seed=seed))


def _agnostic(
    args: argparse.Namespace, loaded: Any, config: Any, device: Any, clean_images: Any
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Our method with saliency seeds --seed .. --seed + --seeds - 1 under one progress bar: the
    report.json of the runs (``worker.median_seed.combine_seed_reports``) and the median run's images."""
    from tqdm import tqdm

    from worker.audit import audit_model
    from worker.detectors.base import DetectorInputError
    from worker.median_seed import combine_seed_reports
    from worker.report import build_report, render_images

    seeds = [args.seed + i for i in range(args.seeds)]
    reports: list[dict[str, Any]] = []
    # each run's images, not its maps: N runs' maps of a many-class model would hold N times the memory
    images: list[dict[str, bytes]] = []
    with tqdm(total=1, desc=f"scan {args.model.name}", unit="step", disable=args.quiet) as bar:
        for position, seed in enumerate(seeds):
            if len(seeds) > 1:
                bar.set_description(f"scan {args.model.name} (seed {seed}, {position + 1} of {len(seeds)})")
            run_config = _with_seed(config, seed)

            # every run takes as many steps as this one: the bar's total counts the runs still to come
            def progress(done: int, total: int, start: int = bar.n, runs_left: int = len(seeds) - position) -> None:
                bar.total = start + total * runs_left
                bar.update(start + done - bar.n)

            try:
                outcome = audit_model(loaded, run_config, device=device, progress=progress, clean_images=clean_images)
            except DetectorInputError as exc:  # e.g. a model whose logits turn NaN: no verdict to give
                raise CommandError(str(exc)) from None
            images.append(render_images(outcome.maps, outcome.score))
            reports.append(
                build_report(
                    loaded=loaded,
                    maps=outcome.maps,
                    score=outcome.score,
                    config=run_config,
                    seconds=outcome.seconds,
                    device=str(device),
                )
            )
    report = combine_seed_reports(reports)
    return report, images[seeds.index(report["config"]["saliency"]["seed"])]  # the median run's


def _clean_images(args: argparse.Namespace, loaded: Any, device: Any) -> Any:
    """The user's clean images on ``device``, or None when none were given."""
    from worker.clean_images import load_clean_images

    if args.clean_images is None:
        return None
    try:
        return load_clean_images(args.clean_images, loaded.input_shape).to(device)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _second_opinion(args: argparse.Namespace, loaded: Any, device: Any, clean_images: Any) -> dict[str, Any]:
    """Run a baseline detector (MM-BD or Neural Cleanse) and report it in the same contract."""
    from worker.detectors.base import DetectorInputError, get_detector
    from worker.report import build_detection_report

    detector = get_detector(args.method)
    if detector.requires_clean_images and clean_images is None:
        raise CommandError(f"--method {args.method} needs --clean-images DIR_OR_NPZ (a few dozen clean images)")
    try:
        detection = detector.detect(
            loaded.module,
            loaded.input_shape,
            loaded.num_classes,
            device=device,
            clean_images=clean_images,
            seed=args.seed,
        )
    except DetectorInputError as exc:
        raise CommandError(str(exc)) from None
    return build_detection_report(loaded=loaded, detection=detection, seconds=detection.seconds, device=str(device))


def _check_out_dir(out: Path) -> None:
    """Refuse to replace a folder that holds anything but an earlier report."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "report.json").is_file())):
        raise CommandError(f"--out {out} exists and is not an earlier report folder; choose another --out")


def _write_outputs(out: Path, report: dict[str, Any], images: dict[str, bytes], html: str) -> None:
    """Write into a sibling temp folder and rename, so a failure never leaves a half-written report."""
    import shutil
    import tempfile

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
        (staging / "maps").mkdir()
        for name, data in images.items():
            (staging / "maps" / name).write_bytes(data)
        (staging / "report.json").write_text(json.dumps(report, indent=2))
        (staging / "report.html").write_text(html)
        if out.exists():
            shutil.rmtree(out)  # safe: _check_out_dir refused anything that is not an earlier report
        staging.rename(out)
    except OSError as exc:
        raise CommandError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
