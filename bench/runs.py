"""Running detectors on zoo models, with a result cache that never outlives the code behind it.

Each model reaches a detector the way ``scan`` loads it (``load_checkpoint`` with the manifest's
declared architecture, shape and normalisation). Neural Cleanse gets clean images from the test split
of the model's data set (``worker.zoo.data.balanced_test_images``); the data-free detectors get none.
Results are appended to a JSONL cache, keyed by model sha256, the detector's settings, seed, device,
the number of clean images for a detector that takes them, a hash of the detection code (and of the
data code that picks the clean images) (``detector_key``), and the machine and thread count that ran
them (``machine_stamp``, recorded in each row): so an interrupted run resumes, a new detector costs only
its own time, changed code recomputes, and the seconds a run compares were all measured on one machine
with one thread count.
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import json
import sys
from collections.abc import Iterable
from dataclasses import asdict
from functools import cache
from pathlib import Path
from typing import Any

import torch

from worker.allocator import retain_freed_memory
from worker.detectors.base import Detection, Detector
from worker.median_seed import median_run
from worker.zoo.data import balanced_test_images
from worker.zoo.provenance import this_machine

REPO = Path(__file__).resolve().parents[1]
LOADER = "worker.loading.loader"  # how every model reaches a detector (load_model)
DATA = "worker.zoo.data"  # which clean images a detector that takes them gets (balanced_test_images)


class CacheError(ValueError):
    """The result cache holds a line that is not a result row, before its last line."""


def load_model(zoo: Path, entry: dict[str, Any], device: str = "cpu") -> torch.nn.Module:
    """The zoo model as ``scan`` would load it: through the safe loader, with the declared spec."""
    from worker.loading.loader import load_checkpoint
    from worker.loading.types import ModelSpec

    spec = ModelSpec(
        input_shape=tuple(entry["input_shape"]),
        num_classes=entry["num_classes"],
        arch=entry["arch"],
        mean=tuple(entry["mean"]) if entry["mean"] else None,
        std=tuple(entry["std"]) if entry["std"] else None,
    )
    return load_checkpoint(zoo / entry["path"], spec, device=device).module


def _module_file(name: str) -> Path | None:
    """The file of a first-party module (``worker.*``), or None for anything else."""
    if not name.startswith("worker."):
        return None
    base = REPO / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports, at any depth of its code (lazy imports included);
    ``from a import b`` yields both ``a`` and ``a.b``, since ``b`` may be a module."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@cache
def code_version(*modules: str) -> str:
    """A short hash of ``modules`` and every first-party module they import, transitively.

    Constants such as the scorer's calibration live in code, not in a detector's settings; keying
    the cache on this hash means a cached result never outlives the code that produced it, while a
    change to one detector's code leaves the others' results valid.
    """
    files: set[Path] = set()
    todo = list(modules)
    while todo:
        path = _module_file(todo.pop())
        if path is not None and path not in files:
            files.add(path)
            todo.extend(_imported_names(path))
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def detector_key(detector: Detector, seed: int = 0, device: str = "cpu", clean_images: int | None = None) -> str:
    """Identifies a detector, its settings, seed and device *and the detection code* in the result cache;
    for a detector that takes clean images, also their number and the data code that picks them.

    Dataclass detectors list every option in their repr; others are expected to hold their options
    in a ``config`` attribute with such a repr (a default object repr would never match again, which
    only costs a recomputation).
    """
    config = getattr(detector, "config", None)
    settings = f"{detector.name}:{config!r}" if config is not None else repr(detector)
    # seed 0 on the CPU keeps the keys that results had before seeds and devices were keyed
    run = (f"+seed={seed}" if seed else "") + (f"+device={device}" if device != "cpu" else "")
    # the loader is part of the detection: it chooses the layout the model runs in (finalize.py)
    modules = [type(detector).__module__, LOADER]
    if detector.requires_clean_images:  # the data-free detectors keep their keys
        if clean_images is None:
            raise ValueError(f"{detector.name} takes clean images: its key needs their number")
        run += f"+clean_images={clean_images}"
        modules.append(DATA)
    return f"{settings}{run}@{code_version(*modules)}"


def machine_stamp(device: str = "cpu") -> dict[str, Any]:
    """What a result's seconds depend on besides the code (and its scores, at the last bits): torch, the
    CPU, its kernels and torch's thread count now (``this_machine``), and the GPU of a CUDA run. Cached
    rows are reused only on the same stamp, so a run never sets seconds from two machines side by side."""
    machine = this_machine()
    if device.startswith("cuda"):
        machine["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return machine


def _stamp_key(machine: Any) -> str:
    return json.dumps(machine, sort_keys=True)


def read_cache(cache: Path) -> list[dict[str, Any]]:
    """The cached result rows, oldest first (none if there is no cache).

    A last line that does not decode is what a run killed while appending leaves: it is skipped with a
    warning on stderr and cut from the file, so that the next row starts a line of its own (a last row
    that lost only its newline gets it back). Any other line that is not a result row is damage this
    code cannot explain: CacheError naming the line. The file is read under the lock appends take, so a
    row another run is writing is never taken for a broken one.
    """
    if not cache.is_file():
        return []
    rows = []
    with open(cache, "rb+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        lines = handle.read().splitlines(keepends=True)
        offset = 0
        for number, line in enumerate(lines, start=1):
            try:
                row = json.loads(line) if line.strip() else None
                if row is not None and not (isinstance(row, dict) and {"sha256", "detector_key"} <= row.keys()):
                    raise ValueError("a JSON value that is not a result row")
            except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
                if number < len(lines):
                    raise CacheError(
                        f"{cache}:{number}: not a result row ({exc}); delete that line (or the file, which "
                        "recomputes every result)"
                    ) from exc
                print(
                    f"warning: {cache}:{number}: skipping the incomplete last line (a run stopped while "
                    "writing it) and removing it from the cache",
                    file=sys.stderr,
                )
                handle.truncate(offset)
                break
            if row is not None:
                rows.append(row)
            offset += len(line)
        else:
            if lines and not lines[-1].endswith(b"\n"):
                handle.write(b"\n")
    return rows


def append_row(cache: Path, row: dict[str, Any]) -> None:
    """Append one row to the cache as one write, flushed, under the cache's lock."""
    line = (json.dumps(row) + "\n").encode()
    with open(cache, "ab", buffering=0) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        written = handle.write(line)
        while written < len(line):  # a raw write may be partial; the lock keeps the row in one piece
            written += handle.write(line[written:])
        handle.flush()


def run_detectors(
    zoo: Path,
    entries: list[dict[str, Any]],
    detectors: list[Detector],
    *,
    clean_images: int,
    cache: Path,
    seed: int = 0,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """One result row per (model, detector), from the cache where present, else computed and cached.

    A cached row counts only if this machine and thread count computed it (``machine_stamp``); rows
    cached before rows recorded their machine are recomputed once. CacheError for a damaged cache.
    """
    retain_freed_memory()  # as every auditing process does (worker/allocator.py); it times both detectors alike
    machine = machine_stamp(device)
    here = _stamp_key(machine)
    done: dict[tuple[str, str], dict[str, Any]] = {}
    for row in read_cache(cache):
        if "machine" in row and _stamp_key(row["machine"]) == here:
            done[(row["sha256"], row["detector_key"])] = row
    rows = []
    for entry in _progress(entries):
        model: torch.nn.Module | None = None
        for detector in detectors:
            key = (entry["sha256"], detector_key(detector, seed, device, clean_images))
            if key not in done:
                model = model if model is not None else load_model(zoo, entry, device)
                images = (
                    balanced_test_images(entry["dataset"], clean_images).to(device)
                    if detector.requires_clean_images
                    else None
                )
                detection = detector.detect(
                    model,
                    tuple(entry["input_shape"]),
                    entry["num_classes"],
                    device=device,
                    clean_images=images,
                    seed=seed,
                )
                done[key] = {**_row(entry, detector, detection, key[1]), "machine": machine}
                append_row(cache, done[key])
            rows.append(
                {
                    **done[key],
                    "split": entry["split"],
                    "family": entry["family"],
                    "part": entry["part"],
                    "arch": entry["arch"],
                }
            )
    return rows


def median_rows(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (model, detector) from several seeds' runs of the same selection: the run at the
    median probability, its ``seconds`` the sum of all runs' (what the verdict cost) and ``seeds`` the
    runs' detector keys in seed order. Rows must be in the same order in every run."""
    combined = []
    for rows in zip(*runs, strict=True):
        if len({(r["model"], r["detector"]) for r in rows}) != 1:
            raise ValueError("the seeds' runs do not list the same models and detectors in the same order")
        median = rows[median_run([r["probability"] for r in rows])]
        combined.append(
            {**median, "seconds": sum(r["seconds"] for r in rows), "seeds": [r["detector_key"] for r in rows]}
        )
    return combined


def _row(entry: dict[str, Any], detector: Detector, detection: Detection, key: str) -> dict[str, Any]:
    result = asdict(detection)
    # per-class lists (features, anomaly indices) are kept: they let a scorer be studied without rerunning
    result["details"] = {k: v for k, v in result["details"].items() if _is_json(v)}
    return {
        "model": entry["id"],
        "sha256": entry["sha256"],
        "detector": detector.name,
        "detector_key": key,
        "backdoored": entry["backdoored"],
        "target_classes": entry["target_classes"],
        **result,
    }


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _progress(entries: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    from tqdm import tqdm

    return tqdm(entries, desc="benchmark", unit="model", file=sys.stderr)
