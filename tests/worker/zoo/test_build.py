"""The zoo plan is well-formed, and a build saves loadable models, records ground truth and resumes."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from worker.loading import registry
from worker.zoo import build
from worker.zoo.attacks import BadNetsPatch
from worker.zoo.build import ManifestError, TrainingError, build_zoo, rejection
from worker.zoo.data import FASHION_MNIST_DIR, tint
from worker.zoo.plan import QUICK_TRAIN_SIZE, ZooModel, plan
from worker.zoo.train import TrainedModel


def test_full_plan_has_twins_splits_and_enough_test_models() -> None:
    models = plan()
    ids = {m.id for m in models}
    assert len(ids) == len(models)
    for model in models:
        if model.attacks:
            assert model.twin in ids, f"{model.id} has no clean twin"
            assert model.family != "clean"
        else:
            assert model.family == "clean"
    test = [m for m in models if m.split == "test"]
    assert len(test) >= 40 and sum(m.family == "clean" for m in test) >= 15
    dev = [m for m in models if m.split == "dev"]
    assert sum(m.family != "clean" for m in dev) >= 25 and sum(m.family == "clean" for m in dev) >= 25
    assert {m.family for m in models if m.split == "dev"} == {m.family for m in models if m.split == "test"}
    for part in ("gray", "rgb"):  # spread triggers can be studied on dev in both parts
        assert {"blended", "sig"} <= {m.family for m in dev if m.part == part}
    assert Counter(m.part for m in models)["rgb"] >= 12


def test_quick_plan_is_small_and_has_its_twins() -> None:
    models = plan(quick=True)
    assert len(models) <= 6
    assert all(m.train_size == QUICK_TRAIN_SIZE for m in models)
    assert all(m.twin in {c.id for c in models} for m in models if m.attacks)


def _trained(accuracy: float, success: float | None) -> TrainedModel:
    net = torch.nn.Linear(1, 1)
    return TrainedModel(net, net, accuracy, success, () if success is None else (success,), 0.0)


def _twin_and_backdoor() -> tuple[ZooModel, ZooModel]:
    """A clean lenet5 seed 0 and the backdoored lenet5 judged against it."""
    twin = ZooModel("gray-fashion_mnist-clean-lenet5-s0", "gray", "fashion_mnist", "lenet5", "clean")
    backdoored = ZooModel("gray-fashion_mnist-badnets-lenet5-s0", "gray", "fashion_mnist", "lenet5", "badnets",
                          (BadNetsPatch(4, 3),))  # fmt: skip
    return twin, backdoored


def test_rejection_rules() -> None:
    model = ZooModel("m", "gray", "fashion_mnist", "lenet5", "badnets", (BadNetsPatch(0),))
    assert rejection(model, _trained(0.85, 0.95), twin_accuracy=0.86) is None
    assert "attack success" in str(rejection(model, _trained(0.85, 0.5), twin_accuracy=0.86))
    assert "clean twin" in str(rejection(model, _trained(0.70, 0.99), twin_accuracy=0.86))
    clean = ZooModel("c", "rgb", "fashion_mnist_rgb", "squeezenet1_1", "clean")
    assert "did not learn" in str(rejection(clean, _trained(0.10, None), twin_accuracy=None))
    assert rejection(clean, _trained(0.70, None), twin_accuracy=0.86) is None  # a clean model is not judged


def test_clean_models_of_any_seed_are_kept_without_waiting_for_the_seed_0_twin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The docs (and the manifest's twin None) say only backdoored models are judged against a twin: a
    clean seed-1 model that trails the seed-0 one is still a clean model of the zoo, and its builder
    must not block on another builder's claim of the twin."""
    s0 = ZooModel("gray-fashion_mnist-clean-lenet5-s0", "gray", "fashion_mnist", "lenet5", "clean")
    s1 = ZooModel("gray-fashion_mnist-clean-lenet5-s1", "gray", "fashion_mnist", "lenet5", "clean", seed=1)
    monkeypatch.setattr(build, "plan", lambda quick=False: [s0, s1])
    monkeypatch.setattr(build, "train_zoo_model", lambda model: _trained(0.9 if model.seed == 0 else 0.8, None))
    manifest = build_zoo(tmp_path)
    assert [m["id"] for m in manifest["models"]] == [s0.id, s1.id] and manifest["rejected"] == []

    other = tmp_path / "other"
    (other / "models").mkdir(parents=True)
    built: list[dict] = []
    with build._claim(other, s0.id):  # another builder is training the twin
        builder = threading.Thread(target=lambda: built.append(build_zoo(other, only="*-s1")))
        builder.start()
        builder.join(timeout=30)
        waited = builder.is_alive()
    builder.join()
    assert not waited, "the clean model's builder waited for the twin's claim"
    assert [m["id"] for m in built[0]["models"]] == [s1.id]


def test_a_backdoored_model_selected_by_only_brings_its_twin_and_is_judged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without its twin a backdoored model would be kept unjudged, and a kept model is never retrained."""
    twin, backdoored = _twin_and_backdoor()
    monkeypatch.setattr(build, "plan", lambda quick=False: [twin, backdoored])
    monkeypatch.setattr(build, "train_zoo_model", lambda model: _trained(0.5 if model.attacks else 0.9, 0.99))
    manifest = build_zoo(tmp_path, only="*badnets*")
    assert [m["id"] for m in manifest["models"]] == [twin.id]
    assert [r["id"] for r in manifest["rejected"]] == [backdoored.id]
    assert "trails its clean twin's 0.900" in manifest["rejected"][0]["reason"]


def test_a_foreign_manifest_and_a_refused_recipe_raise_errors_that_tell_them_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI tells a user to remove the folder only when the folder is at fault."""
    from app.cli import main

    model = ZooModel("gray-fashion_mnist-clean-lenet5-s0", "gray", "fashion_mnist", "lenet5", "clean")
    monkeypatch.setattr(build, "plan", lambda quick=False: [model])
    monkeypatch.setattr("worker.zoo.plan.plan", lambda quick=False: [model])  # the CLI's selection check

    def refuse(model: ZooModel) -> TrainedModel:
        raise ValueError("poison rate must be in [0, 1], got 2")

    monkeypatch.setattr(build, "train_zoo_model", refuse)
    with pytest.raises(TrainingError, match=f"training {model.id} failed: poison rate"):
        build_zoo(tmp_path / "zoo")
    assert main(["zoo", "build", "--out", str(tmp_path / "zoo"), "--kernels", "native"]) == 2
    err = capsys.readouterr().err
    assert "poison rate must be in [0, 1]" in err and "remove the folder" not in err

    for text in ('{"version": 0, "models": [], "rejected": []}', '{"version": 1, "mod'):
        (tmp_path / "zoo" / "manifest.json").write_text(text)
        with pytest.raises(ManifestError, match=r"manifest\.json"):
            build_zoo(tmp_path / "zoo")
        assert main(["zoo", "build", "--out", str(tmp_path / "zoo"), "--kernels", "native"]) == 2
        assert "remove the folder or pick another --out" in capsys.readouterr().err


def test_tint_is_per_image_colour_and_stays_in_range() -> None:
    gray = torch.zeros(2, 1, 28, 28)
    gray[:, :, 10:18, 10:18] = 1.0
    rgb = tint(gray, seed=0)
    assert rgb.shape == (2, 3, 32, 32)
    assert float(rgb.min()) >= 0.0 and float(rgb.max()) <= 1.0
    assert not torch.allclose(rgb[0, :, 16, 16], rgb[1, :, 16, 16])  # foreground colours differ
    assert torch.equal(rgb, tint(gray, seed=0))


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_build_saves_ground_truth_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = [
        ZooModel("gray-fashion_mnist-clean-lenet5-s0", "gray", "fashion_mnist", "lenet5", "clean", train_size=300,
                 epochs=1, split="test"),
        ZooModel("gray-fashion_mnist-badnets-lenet5-s0", "gray", "fashion_mnist", "lenet5", "badnets",
                 (BadNetsPatch(4, 3),), train_size=300, epochs=1, split="dev"),
    ]  # fmt: skip
    monkeypatch.setattr(build, "plan", lambda quick=False: tiny)
    monkeypatch.setattr(build, "MIN_ATTACK_SUCCESS", 0.0)  # 300 images cannot teach a backdoor reliably
    monkeypatch.setattr(build, "ACCURACY_TOLERANCE", 1.0)
    monkeypatch.setattr(build, "MIN_CLEAN_ACCURACY", 0.0)
    manifest = build_zoo(tmp_path)
    assert [m["id"] for m in manifest["models"]] == [m.id for m in tiny]
    clean, backdoored = manifest["models"]
    assert clean["backdoored"] is False and clean["attack_success"] is None and clean["twin"] is None
    assert backdoored["target_classes"] == [4] and backdoored["attacks"][0]["family"] == "badnets"
    assert backdoored["attack_successes"] == [backdoored["attack_success"]] and clean["attack_successes"] == []
    assert backdoored["twin"] == clean["id"] and backdoored["split"] == "dev"
    assert backdoored["input_shape"] == [1, 28, 28] and backdoored["mean"] is None
    assert clean["trained_on"]["torch"] == torch.__version__ and clean["trained_on"]["cpu_capability"]
    weights = load_file(str(tmp_path / backdoored["path"]))
    registry.build("lenet5", num_classes=10, in_channels=1).load_state_dict(weights, strict=True)
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest

    def no_training(model: ZooModel) -> TrainedModel:
        raise AssertionError(f"{model.id} was retrained")

    monkeypatch.setattr(build, "train_zoo_model", no_training)
    assert build_zoo(tmp_path) == manifest

    changed = [tiny[0], dataclasses.replace(tiny[1], epochs=2)]  # a new recipe must be retrained
    monkeypatch.setattr(build, "plan", lambda quick=False: changed)
    with pytest.raises(AssertionError, match="badnets-lenet5-s0 was retrained"):
        build_zoo(tmp_path)


def test_builders_sharing_a_folder_keep_each_others_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = [
        ZooModel("gray-fashion_mnist-clean-lenet5-s0", "gray", "fashion_mnist", "lenet5", "clean", train_size=300,
                 epochs=1, split="test"),
        ZooModel("gray-fashion_mnist-clean-lenet5-s1", "gray", "fashion_mnist", "lenet5", "clean", train_size=300,
                 epochs=1, seed=1, split="dev"),
    ]  # fmt: skip
    monkeypatch.setattr(build, "plan", lambda quick=False: tiny)
    monkeypatch.setattr(build, "MIN_CLEAN_ACCURACY", 0.0)
    train = build.train_zoo_model

    def train_while_another_builder_records(model: ZooModel) -> TrainedModel:
        other = {"id": f"rgb-other-{model.seed}", "recipe": {}, "reason": "recorded by a second builder"}
        build._record(tmp_path, "rejected", other)
        return train(model)

    monkeypatch.setattr(build, "train_zoo_model", train_while_another_builder_records)
    manifest = build_zoo(tmp_path)
    assert [m["id"] for m in manifest["models"]] == [m.id for m in tiny]
    assert [r["id"] for r in manifest["rejected"]] == ["rgb-other-0", "rgb-other-1"]
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest


def test_builders_skip_a_model_another_is_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = [
        ZooModel("gray-fashion_mnist-clean-lenet5-s0", "gray", "fashion_mnist", "lenet5", "clean"),
        ZooModel("gray-fashion_mnist-clean-small_cnn-s0", "gray", "fashion_mnist", "small_cnn", "clean"),
    ]  # each its own twin, so neither waits for the other
    monkeypatch.setattr(build, "plan", lambda quick=False: tiny)
    trained: list[str] = []

    def record_training(model: ZooModel) -> TrainedModel:
        trained.append(model.id)
        return _trained(0.9, None)

    monkeypatch.setattr(build, "train_zoo_model", record_training)
    (tmp_path / "models").mkdir()
    with build._claim(tmp_path, tiny[0].id) as claimed:  # the other builder
        assert claimed
        manifest = build_zoo(tmp_path)
    assert trained == [tiny[1].id]
    assert [m["id"] for m in manifest["models"]] == [tiny[1].id]
    assert [m["id"] for m in build_zoo(tmp_path)["models"]] == [tiny[1].id, tiny[0].id]  # claim released


def test_a_backdoored_model_is_judged_after_its_twin_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    twin, backdoored = _twin_and_backdoor()
    monkeypatch.setattr(build, "plan", lambda quick=False: [twin, backdoored])
    (tmp_path / "models").mkdir()
    holding, trained = threading.Event(), threading.Event()

    def other_builder_trains_the_twin() -> None:
        with build._claim(tmp_path, twin.id):
            holding.set()
            trained.wait(timeout=30)
            (tmp_path / "models" / "twin").write_bytes(b"weights")
            build._record(tmp_path, "models", {"id": twin.id, "recipe": twin.recipe, "path": "models/twin",
                                               "clean_accuracy": 0.9})  # fmt: skip

    def train_poorly(model: ZooModel) -> TrainedModel:
        trained.set()
        return _trained(0.5, 0.99)  # far below the twin's 0.9

    monkeypatch.setattr(build, "train_zoo_model", train_poorly)
    other = threading.Thread(target=other_builder_trains_the_twin)
    other.start()
    holding.wait(timeout=30)
    manifest = build_zoo(tmp_path, only="*badnets*")
    other.join()
    assert [r["id"] for r in manifest["rejected"]] == [backdoored.id]
    assert "trails its clean twin's 0.900" in manifest["rejected"][0]["reason"]


def test_a_split_build_trains_that_split_and_the_twins_it_is_judged_against(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lenet, cnn = "gray-fashion_mnist-clean-lenet5-s0", "gray-fashion_mnist-clean-small_cnn-s0"
    tiny = [
        ZooModel(lenet, "gray", "fashion_mnist", "lenet5", "clean", split="dev"),
        ZooModel(cnn, "gray", "fashion_mnist", "small_cnn", "clean", split="dev"),
        ZooModel("gray-fashion_mnist-badnets-lenet5-s0", "gray", "fashion_mnist", "lenet5", "badnets",
                 (BadNetsPatch(4, 3),), split="test"),
    ]  # fmt: skip
    monkeypatch.setattr(build, "plan", lambda quick=False: tiny)
    trained: list[str] = []

    def record_training(model: ZooModel) -> TrainedModel:
        trained.append(model.id)
        return _trained(0.9, 0.99 if model.attacks else None)

    monkeypatch.setattr(build, "train_zoo_model", record_training)
    build_zoo(tmp_path, split="test")
    assert trained == [lenet, tiny[2].id]  # the dev twin first, the other dev model not at all
    build_zoo(tmp_path, split="dev")
    assert trained == [lenet, tiny[2].id, cnn]
