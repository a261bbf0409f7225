"""``backdoor-audit scan`` end to end in a real process: verdicts on real models, errors on bad input."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import FAST_AUDIT_CONFIG
from worker.examples import ExampleModel
from worker.median_seed import median_run, verdicts_split


def scan(*args: str, cwd: Path, quiet: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "scan", *(["--quiet"] if quiet else []), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[3]), "PATH": "/usr/bin:/bin"},
    )


@pytest.mark.slow
def test_backdoored_model_is_flagged_with_its_target_first(badnets_checkpoint: ExampleModel, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = scan(*badnets_checkpoint.cli_args(), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] in {"suspicious", "backdoored"}
    assert report["suspected_classes"][0] == badnets_checkpoint.target_class
    target = report["classes"][badnets_checkpoint.target_class]
    _, _, x1, y1 = target["trigger_bbox"]
    assert x1 > 24 and y1 > 24, f"the trigger estimate {target['trigger_bbox']} should cover the bottom-right patch"
    assert report["model"]["num_classes"] == 10 and report["model"]["input_shape"] == [1, 28, 28]
    assert len(report["model"]["sha256"]) == 64 and report["seconds"] > 0
    assert {"saliency", "scoring"} <= set(report["config"])
    for entry in report["classes"]:
        assert (out / "maps" / entry["map_file"]).read_bytes().startswith(b"\x89PNG")
        assert (out / "maps" / entry["heatmap_file"]).is_file()
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "http://" not in html
    assert "P(backdoored)" in result.stdout
    assert report["borderline"] is False and "borderline" not in result.stderr  # its evidence is far above the line


@pytest.mark.slow
def test_clean_twin_is_not_flagged(clean_checkpoint: ExampleModel, tmp_path: Path) -> None:
    result = scan(*clean_checkpoint.cli_args(), "--out", str(tmp_path / "report"), cwd=tmp_path)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert result.returncode == 0, (result.stdout, report["probability"], report["suspected_classes"])
    assert report["verdict"] == "clean" and report["suspected_classes"] == []


@pytest.mark.slow
def test_a_verdict_on_the_threshold_says_a_rescan_could_turn_it(clean_checkpoint: ExampleModel, tmp_path: Path) -> None:
    scan(*clean_checkpoint.cli_args(), "--out", str(tmp_path / "a"), "--config", json.dumps(FAST_AUDIT_CONFIG),
                 cwd=tmp_path)  # fmt: skip
    probability = json.loads((tmp_path / "a" / "report.json").read_text())["probability"]
    # the same scan (same seed, same maps) with the suspicious threshold moved onto its probability
    scoring = {"suspicious_at": probability, "backdoored_at": max(probability, 0.9)}
    config = {**FAST_AUDIT_CONFIG, "scoring": scoring}
    second = scan(*clean_checkpoint.cli_args(), "--out", str(tmp_path / "b"), "--config", json.dumps(config),
                  cwd=tmp_path)  # fmt: skip
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert second.returncode == 1 and report["verdict"] != "clean" and report["borderline"] is True
    note = [line for line in second.stderr.splitlines() if line.startswith("note: borderline")]
    assert len(note) == 1 and "rescan with --seed 0 --seeds 3 (" in note[0], second.stderr  # seed 0 scanned


@pytest.mark.slow
def test_several_seeds_report_the_median_run(clean_checkpoint: ExampleModel, tmp_path: Path) -> None:
    fast = json.dumps(FAST_AUDIT_CONFIG)
    result = scan(*clean_checkpoint.cli_args(), "--seed", "0", "--seeds", "3", "--out", str(tmp_path / "three"),
                  "--config", fast, cwd=tmp_path, quiet=False)  # fmt: skip
    report = json.loads((tmp_path / "three" / "report.json").read_text())
    assert result.returncode == (0 if report["verdict"] == "clean" else 1), result.stderr
    runs = report["seeds"]
    assert [run["seed"] for run in runs] == [0, 1, 2]
    median = runs[median_run([run["probability"] for run in runs])]
    assert (report["verdict"], report["probability"]) == (median["verdict"], median["probability"])
    assert report["config"]["saliency"]["seed"] == median["seed"]  # its maps and scores are that run's
    assert report["borderline"] is verdicts_split([run["verdict"] for run in runs])
    assert "median of 3 seeds" in result.stdout and "(seed 2, 3 of 3)" in result.stderr  # one bar, named per run
    flagged = sum(run["verdict"] != "clean" for run in runs)
    split_note = f"note: the seeds disagree: {flagged} of 3 flag the model; the verdict is the median run's (seed "
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert notes == ([f"{split_note}{median['seed']})"] if report["borderline"] else []), result.stderr
    html = (tmp_path / "three" / "report.html").read_text()
    assert "Median of 3 saliency seeds" in html

    single = scan(*clean_checkpoint.cli_args(), "--seed", "1", "--seeds", "1", "--out", str(tmp_path / "one"),
                  "--config", fast, cwd=tmp_path)  # fmt: skip
    alone = json.loads((tmp_path / "one" / "report.json").read_text())
    assert single.returncode in (0, 1) and "seeds" not in alone and "median of" not in single.stdout
    # each run is deterministic per seed on one device, whichever runs came before it in the process
    assert alone["probability"] == runs[1]["probability"] and alone["verdict"] == runs[1]["verdict"]

    # the same three runs with the suspicious threshold on the median run's probability: the lowest stays clean
    scoring = {"suspicious_at": median["probability"], "backdoored_at": max(median["probability"], 0.9)}
    split = scan(*clean_checkpoint.cli_args(), "--seeds", "3", "--out", str(tmp_path / "split"),
                 "--config", json.dumps({**FAST_AUDIT_CONFIG, "scoring": scoring}), cwd=tmp_path)  # fmt: skip
    report = json.loads((tmp_path / "split" / "report.json").read_text())
    assert [run["probability"] for run in report["seeds"]] == [run["probability"] for run in runs]
    assert split.returncode == 1 and report["borderline"] is True and report["verdict"] != "clean"
    assert split.stderr.splitlines() == [
        f"note: the seeds disagree: 2 of 3 flag the model; the verdict is the median run's (seed {median['seed']})"
    ]


def test_seeds_must_be_odd_and_only_with_our_method(tmp_path: Path) -> None:
    # a model that does not exist: these are refused before anything is loaded
    cases = {
        ("--seeds", "2"): "use an odd number of seeds",
        ("--seeds", "0"): "use an odd number of seeds",
        ("--seeds", "3", "--method", "mmbd"): "it does not apply to --method mmbd",
    }
    for extra, needle in cases.items():
        out = tmp_path / "out"
        result = scan(str(tmp_path / "absent.safetensors"), "--arch", "small_cnn", *extra, "--out", str(out),
                      cwd=tmp_path)  # fmt: skip
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: --seeds "), result.stderr
        assert needle in lines[0] and not out.exists()


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("pickled code ran",))


def _model_with_nan_logits(tmp_path: Path) -> Path:
    """A small_cnn with finite but huge weights: finite logits on the blank input the loader tries,
    NaN on the saliency engine's random starts (it used to be reported clean, P=nan, exit 0)."""
    from safetensors.torch import save_file

    from worker.nets import SmallCNN

    net = SmallCNN(10, 1)
    with torch.no_grad():
        net.features[0].weight.mul_(1e37)
        net.features[3].weight.mul_(1e37)
    path = tmp_path / "nan.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), {"arch": "small_cnn"})
    return path


def _bad_inputs(tmp_path: Path, badnets: ExampleModel) -> dict[str, tuple[list[str], str]]:
    random_bytes = tmp_path / "random.pt"
    random_bytes.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    module = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), module)  # a whole pickled nn.Module, not a state_dict
    payload = tmp_path / "payload.pkl"
    payload.write_bytes(pickle.dumps(_Payload()))
    return {
        "logits that turn NaN": ([str(_model_with_nan_logits(tmp_path)), "--input-shape", "1,28,28"], "NaN"),
        "missing file": ([str(tmp_path / "nope.safetensors"), "--arch", "small_cnn"], "nope.safetensors"),
        "random bytes": ([str(random_bytes), "--arch", "small_cnn", "--input-shape", "1,28,28"], "format"),
        "pickled module": ([str(module), "--arch", "small_cnn", "--input-shape", "1,28,28"], "torch.nn"),
        "code in a pickle": ([str(payload), "--arch", "small_cnn", "--input-shape", "1,28,28"], "builtins"),
        "wrong input shape": (
            [str(badnets.path), "--arch", "small_cnn", "--input-shape", "3,8,8", "--num-classes", "10"],
            "input",
        ),
    }


@pytest.mark.slow
def test_bad_inputs_exit_2_with_one_clear_line(badnets_checkpoint: ExampleModel, tmp_path: Path) -> None:
    for case, (args, needle) in _bad_inputs(tmp_path, badnets_checkpoint).items():
        out = tmp_path / f"out-{case.replace(' ', '-')}"
        result = scan(*args, "--out", str(out), "--config", json.dumps(FAST_AUDIT_CONFIG), cwd=tmp_path)
        assert result.returncode == 2, (case, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (case, result.stderr)
        assert needle.lower() in lines[0].lower(), (case, lines[0])
        assert "Traceback" not in result.stderr and "pickled code ran" not in result.stdout
        assert not out.exists(), f"{case}: nothing may be written on error"


def test_invalid_config_and_arguments_exit_2(tmp_path: Path) -> None:
    result = scan("model.pt", "--config", '{"saliency": {"iteration": 5}}', cwd=tmp_path)
    assert result.returncode == 2 and "unknown saliency config keys: iteration" in result.stderr
    result = scan("model.pt", "--input-shape", "28,28", cwd=tmp_path)
    assert result.returncode == 2 and "expected C,H,W" in result.stderr
    # the last of --seeds' seeds is checked with the config, before any work
    result = scan("model.pt", "--seed", str(2**32 - 2), "--seeds", "3", cwd=tmp_path)
    assert result.returncode == 2 and "seed" in result.stderr and "Traceback" not in result.stderr, result.stderr


@pytest.mark.slow
def test_second_opinions_write_the_same_contract(badnets_checkpoint: ExampleModel, tmp_path: Path) -> None:
    from worker.zoo.data import load_fashion_mnist

    result = scan(*badnets_checkpoint.cli_args(), "--method", "mmbd", "--out", str(tmp_path / "mmbd"), cwd=tmp_path)
    report = json.loads((tmp_path / "mmbd" / "report.json").read_text())
    assert result.returncode == (0 if report["verdict"] == "clean" else 1)
    assert report["method"] == "mmbd" and len(report["classes"]) == 10
    assert report["borderline"] is None  # the seed spread is our detector's, not a baseline's
    assert report["classes"][0]["map_file"] is None and (tmp_path / "mmbd" / "report.html").is_file()

    missing = scan(
        *badnets_checkpoint.cli_args(), "--method", "neural-cleanse", "--out", str(tmp_path / "nc0"), cwd=tmp_path
    )
    assert missing.returncode == 2 and "needs --clean-images" in missing.stderr
    assert not (tmp_path / "nc0").exists()

    images, _ = load_fashion_mnist("test")
    clean = tmp_path / "clean.npz"
    np.savez(clean, images=(images[:30].numpy() * 255).astype("uint8"))
    args = [*badnets_checkpoint.cli_args(), "--method", "neural-cleanse", "--clean-images", str(clean)]
    result = scan(*args, "--out", str(tmp_path / "nc"), cwd=tmp_path)
    report = json.loads((tmp_path / "nc" / "report.json").read_text())
    assert result.returncode in (0, 1) and report["method"] == "neural-cleanse"
    assert report["config"]["details"]["mask_l1"], "Neural Cleanse's mask norms travel with the report"
