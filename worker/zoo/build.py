"""The zoo builder: trains the planned models (``worker.zoo.plan``) reproducibly, with ground truth.

``build_zoo(out_dir)`` trains every planned model that ``out_dir/manifest.json`` does not list yet
(so an interrupted build resumes), saves each as ``models/<id>.safetensors`` (the architecture's
state_dict; normalisation and shape are declared in the manifest, as a user would declare them to
``scan``), and records the ground truth. Every model must have learned (clean accuracy >=
``MIN_CLEAN_ACCURACY``). Backdoored models are judged besides: kept only if the trigger works (attack
success >= 0.9 on non-target test images) and the model stays useful (clean accuracy within
``ACCURACY_TOLERANCE`` of its clean twin: same part, data set and architecture, seed 0). Clean models
are never compared with a twin, whatever their seed. The others are listed under ``rejected`` with the
reason, so a resumed build does not retrain them.
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from worker.files import write_text_atomically
from worker.zoo.attacks import describe
from worker.zoo.data import load_dataset
from worker.zoo.plan import ZooModel, plan
from worker.zoo.provenance import this_machine
from worker.zoo.train import TrainedModel, save_weights, train_classifier

MANIFEST_VERSION = 1
MIN_ATTACK_SUCCESS = 0.9
MIN_CLEAN_ACCURACY = 0.5
ACCURACY_TOLERANCE = 0.05  # a backdoored model may trail its clean twin by this much clean accuracy
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ManifestError(ValueError):
    """The zoo folder's manifest cannot be read as this builder's: another version, or not JSON."""


class TrainingError(RuntimeError):
    """A planned model could not be trained: its recipe or the training code is at fault, not the folder."""


def train_zoo_model(model: ZooModel) -> TrainedModel:
    """Train one planned model on its data set's fixed, seed-chosen training subset."""
    data = load_dataset(model.dataset)
    order = torch.randperm(len(data.train[1]), generator=torch.Generator().manual_seed(1000 + model.seed))
    images, labels = data.training_subset(order[: model.train_size])
    return train_classifier(
        model.arch,
        images,
        labels,
        attack=list(model.attacks) or None,
        poison_rate=model.poison_rate,
        epochs=model.epochs,
        lr=model.lr,
        seed=model.seed,
        test=data.test,
        mean=IMAGENET_MEAN if model.normalised else None,
        std=IMAGENET_STD if model.normalised else None,
    )


def manifest_entry(model: ZooModel, trained: TrainedModel, path: str, sha256: str) -> dict[str, Any]:
    """The ground truth the benchmark reads about one saved model."""
    return {
        "id": model.id,
        "recipe": model.recipe,
        "path": path,
        "sha256": sha256,
        "format": "safetensors",
        "arch": model.arch,
        "part": model.part,
        "dataset": model.dataset,
        "input_shape": list(load_dataset(model.dataset).input_shape),
        "num_classes": 10,
        "mean": list(IMAGENET_MEAN) if model.normalised else None,
        "std": list(IMAGENET_STD) if model.normalised else None,
        "family": model.family,
        "backdoored": bool(model.attacks),
        "attacks": [describe(a) for a in model.attacks],
        "target_classes": [a.target_class for a in model.attacks],
        "poison_rate": model.poison_rate if model.attacks else 0.0,
        "seed": model.seed,
        "train_size": model.train_size,
        "epochs": model.epochs,
        "clean_accuracy": round(trained.clean_accuracy, 4),
        "attack_success": None if trained.attack_success is None else round(trained.attack_success, 4),
        # each trigger's (multi-target models have two); entries recorded before it have none. Not in
        # the build's name, which hashes the weights alone (provenance.build_hash)
        "attack_successes": [round(s, 4) for s in trained.attack_successes],
        "twin": None if not model.attacks else model.twin,
        "split": model.split,
        "train_seconds": round(trained.seconds, 1),
        "trained_on": this_machine(),
    }


def rejection(model: ZooModel, trained: TrainedModel, twin_accuracy: float | None) -> str | None:
    """Why a trained model is not kept in the zoo, or None when it is. ``twin_accuracy`` (None: the twin
    is not built) judges backdoored models only: a clean model is the reference, not the judged."""
    if trained.clean_accuracy < MIN_CLEAN_ACCURACY:  # a constant predictor would "succeed" at any attack
        return f"clean accuracy {trained.clean_accuracy:.3f} < {MIN_CLEAN_ACCURACY}: the model did not learn"
    if not model.attacks:
        return None
    if trained.attack_success is not None and trained.attack_success < MIN_ATTACK_SUCCESS:
        return f"attack success {trained.attack_success:.3f} < {MIN_ATTACK_SUCCESS}"
    if twin_accuracy is not None and trained.clean_accuracy < twin_accuracy - ACCURACY_TOLERANCE:
        return f"clean accuracy {trained.clean_accuracy:.3f} trails its clean twin's {twin_accuracy:.3f}"
    return None


def read_manifest(out_dir: Path) -> dict[str, Any]:
    """The folder's manifest (an empty one if there is none); ManifestError if it is not this builder's."""
    path = out_dir / "manifest.json"
    if not path.is_file():
        return {"version": MANIFEST_VERSION, "models": [], "rejected": []}
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path} is not JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
        version = manifest.get("version") if isinstance(manifest, dict) else None
        raise ManifestError(f"{path} has manifest version {version}, expected {MANIFEST_VERSION}")
    return manifest


def _write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    write_text_atomically(out_dir / "manifest.json", json.dumps(manifest, indent=1) + "\n")


@contextmanager
def _locked_manifest(out_dir: Path) -> Iterator[dict[str, Any]]:
    """The manifest, read and written back under an exclusive lock.

    Two builders may share a folder (say ``--only 'gray-*'`` and ``--only 'rgb-*'`` side by side, one
    per core): each re-reads the manifest before recording a model, so neither overwrites the other's
    entries with the copy it read when it started.
    """
    with open(out_dir / "manifest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = read_manifest(out_dir)
        yield manifest
        _write_manifest(out_dir, manifest)


def _record(out_dir: Path, section: str, entry: dict[str, Any]) -> None:
    """Put ``entry`` under ``section`` ("models" or "rejected"), replacing any of the same id."""
    with _locked_manifest(out_dir) as manifest:
        manifest[section] = [e for e in manifest[section] if e["id"] != entry["id"]] + [entry]


@contextmanager
def _claim(out_dir: Path, model_id: str, *, wait: bool = False) -> Iterator[bool]:
    """Hold ``model_id``'s claim while the block runs; yield False if another builder holds it (unless ``wait``).

    The claim is an advisory lock on ``models/<id>.claim``, so it dies with its builder: a crashed
    build leaves nothing that blocks a resumed one.
    """
    with open(out_dir / "models" / f"{model_id}.claim", "w") as claim:
        try:
            fcntl.flock(claim, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def _twin_accuracy(out_dir: Path, model: ZooModel) -> float | None:
    """The clean accuracy of a backdoored ``model``'s twin, waiting for a builder that is training it; None
    if it isn't built, and for a clean model, which is not judged against one (so it never waits)."""
    if not model.attacks:
        return None
    with _claim(out_dir, model.twin, wait=True):
        entries = read_manifest(out_dir)["models"]
    return next((m["clean_accuracy"] for m in entries if m["id"] == model.twin), None)


def _built(out_dir: Path, manifest: dict[str, Any], recipes: dict[str, str]) -> set[str]:
    """Ids whose manifest entry (kept with its file, or rejected) matches the plan's recipe."""
    done = {
        m["id"] for m in manifest["models"] if (out_dir / m["path"]).is_file() and recipes.get(m["id"]) == m["recipe"]
    }
    return done | {r["id"] for r in manifest["rejected"] if recipes.get(r["id"]) == r["recipe"]}


def _build_one(out_dir: Path, model: ZooModel) -> None:
    try:
        trained = train_zoo_model(model)
    except ValueError as exc:  # a recipe the code refuses (an architecture, a data set, a poison rate)
        raise TrainingError(f"training {model.id} failed: {exc}") from exc
    reason = rejection(model, trained, _twin_accuracy(out_dir, model))
    if reason is not None:
        _record(out_dir, "rejected", {"id": model.id, "recipe": model.recipe, "reason": reason,
                                      "attack_success": trained.attack_success,
                                      "clean_accuracy": trained.clean_accuracy})  # fmt: skip
        return
    relative = f"models/{model.id}.safetensors"
    save_weights(trained.net, out_dir / relative)
    sha256 = hashlib.sha256((out_dir / relative).read_bytes()).hexdigest()
    _record(out_dir, "models", manifest_entry(model, trained, relative, sha256))


def build_zoo(
    out_dir: Path,
    *,
    quick: bool = False,
    only: str | None = None,
    split: str | None = None,
    progress: Callable[[Iterator[ZooModel], int], Iterator[ZooModel]] | None = None,
) -> dict[str, Any]:
    """Train and save every planned model (matching the glob ``only``, in ``split``) not yet in the manifest.

    Returns the manifest. The clean twins the selected backdoored models are judged against are built
    too, whatever ``only`` and ``split`` say, so a partial build (``only='*badnets*'``, a split) keeps
    what a full build would keep: a backdoored model is never kept unjudged for want of its twin.

    A manifest entry counts as built only if its recipe matches the plan's; entries of models that
    left the plan are dropped from the manifest (their files stay). Builders may share ``out_dir``:
    each skips the models another is training, and judges a backdoored model against its clean
    twin only once the twin is recorded.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "models").mkdir(exist_ok=True)
    planned = plan(quick=quick)
    recipes = {m.id: m.recipe for m in planned}
    with _locked_manifest(out_dir) as manifest:
        done = _built(out_dir, manifest, recipes)
        manifest["models"] = [m for m in manifest["models"] if m["id"] in done]
        manifest["rejected"] = [r for r in manifest["rejected"] if r["id"] in done]
    wanted = {m.id for m in planned if (only is None or fnmatch.fnmatch(m.id, only)) and split in (None, m.split)}
    wanted |= {m.twin for m in planned if m.id in wanted and m.attacks}
    todo = [m for m in planned if m.id in wanted and m.id not in done]
    steps: Iterator[ZooModel] = iter(todo)
    if progress is not None:
        steps = progress(steps, len(todo))
    for model in steps:
        with _claim(out_dir, model.id) as claimed:
            # another builder may have recorded it since this one read the manifest
            if claimed and model.id not in _built(out_dir, read_manifest(out_dir), recipes):
                _build_one(out_dir, model)
    return read_manifest(out_dir)
