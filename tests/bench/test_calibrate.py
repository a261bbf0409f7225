"""Fitting the scorer's calibration on benchmark rows (the zoo and the detector are exercised elsewhere)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from bench.calibrate import (
    Calibration,
    Row,
    drop_repeated_weights,
    fit,
    fit_centre,
    held_out_cross_entropy,
    main,
    read_rows,
    report,
    threshold_check,
)


def _synthetic(centre: float, slope: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    evidence = rng.uniform(centre - 6, centre + 6, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-slope * (evidence - centre)))).astype(float)
    return evidence, labels


def _rows(kind: str, evidence: list[float], backdoored: list[bool], zoo: str = "z1") -> list[Row]:
    """Rows of one-class models, whose lead is their evidence."""
    return [
        Row(zoo=zoo, model=f"{kind}-{i}", seed=0, kind=kind, backdoored=b, evidence=e, detector_key="k",
            class_evidence=(e,))
        for i, (e, b) in enumerate(zip(evidence, backdoored, strict=True))
    ]  # fmt: skip


ROWS = _rows("gray", [1.0, 2.0, 3.5, 4.5, 5.0, 6.0], [False, False, True, False, True, True]) + _rows(
    "colour", [5.0, 7.0, 8.0, 8.5, 9.5, 10.0], [False, False, True, False, True, True]
)


def test_the_fitted_centre_recovers_the_one_that_drew_the_labels() -> None:
    evidence, labels = _synthetic(centre=4.0, slope=1.5, n=4000, seed=0)
    assert fit_centre(evidence, labels, slope=1.5) == pytest.approx(4.0, abs=0.15)


def test_at_the_fitted_centre_the_probabilities_add_up_to_the_backdoored_count() -> None:
    evidence, labels = _synthetic(centre=8.0, slope=1.0, n=200, seed=1)
    centre = fit_centre(evidence, labels, slope=1.0)
    assert (1 / (1 + np.exp(-(evidence - centre)))).sum() == pytest.approx(labels.sum(), abs=1e-6)


def test_a_kind_with_one_label_has_no_centre() -> None:
    with pytest.raises(ValueError, match="backdoored and clean"):
        fit_centre(np.array([1.0, 2.0]), np.array([1.0, 1.0]), slope=1.5)


def test_each_kind_gets_its_own_centre() -> None:
    calibration = fit(ROWS, slope=1.5)
    assert calibration.centres["colour"] - calibration.centres["gray"] > 3


def test_held_out_rows_fare_worse_than_the_rows_fitted_on() -> None:
    calibration = fit(ROWS, slope=1.5)
    in_sample = float(np.mean([-np.log(p if r.backdoored else 1 - p) for r, p in
                               zip(ROWS, map(calibration.probability, ROWS), strict=True)]))  # fmt: skip
    assert held_out_cross_entropy(ROWS, 1.5, lambda r: r.model) > in_sample


def test_the_threshold_check_counts_rows_at_or_over_the_line() -> None:
    calibration = Calibration(slope=1.0, centres={"gray": 4.0})
    gray = [r for r in ROWS if r.kind == "gray"]
    check = threshold_check(gray, calibration, suspicious_at=0.5)["gray"]
    assert check["lead_line"] == pytest.approx(4.0)
    assert (check["clean_flagged"], check["clean_rows"], check["largest_clean"]) == (1, 3, 4.5)
    assert check["detected"] == pytest.approx(2 / 3)


def test_leaving_one_build_out_needs_two_builds() -> None:
    current = Calibration(slope=1.5, centres={"gray": 4.0, "colour": 8.3})
    assert report(ROWS, current, 0.85, [1.5])["fits"][0]["leave_one_build_out"] is None
    second = [
        Row(**{**asdict(r), "zoo": "z2", "evidence": r.evidence + 0.5, "class_evidence": (r.evidence + 0.5,)})
        for r in ROWS
    ]
    result = report(ROWS + second, current, 0.85, [1.0, 1.5])
    assert result["chosen_by"] == "leave_one_build_out"
    assert all(f["leave_one_build_out"] is not None for f in result["fits"])
    assert result["builds"] == {"z1": 12, "z2": 12}


def _weights(rows: list[Row], zoo: str) -> list[Row]:
    """The rows as a build that trained each model to the same file (sha256 from the model's name) saved them."""
    return [Row(**{**asdict(r), "zoo": zoo, "sha256": f"sha-{r.model}"}) for r in rows]


def test_rows_of_the_same_weights_trained_again_count_once() -> None:
    first = _weights(ROWS, "z1")
    # a rebuild on the same kind of machine: the same files again, one new model, one retrained to
    # other weights that happen to give the same (capped) evidence
    again = _weights(ROWS[2:], "z2")
    new = Row(**{**asdict(first[0]), "zoo": "z2", "model": "gray-new", "sha256": "sha-new"})
    retrained = Row(**{**asdict(first[1]), "zoo": "z2", "sha256": "sha-other"})
    kept, dropped = drop_repeated_weights(first + again + [new, retrained])
    assert dropped == len(ROWS) - 2
    assert kept == [*first, new, retrained]
    other_seed = Row(**{**asdict(first[0]), "zoo": "z2", "seed": 1})
    assert drop_repeated_weights([first[0], other_seed]) == ([first[0], other_seed], 0)
    unknown = [Row(**{**asdict(r), "zoo": "z2"}) for r in ROWS]  # saved before rows carried a sha256
    assert drop_repeated_weights(ROWS + unknown) == (ROWS + unknown, 0)


def test_weights_scored_again_by_other_code_count_once_keeping_the_rows_with_every_class_evidence() -> None:
    older = [Row(**{**asdict(r), "class_evidence": None}) for r in _weights(ROWS, "z1")]
    rescored = [Row(**{**asdict(r), "detector_key": "k2"}) for r in _weights(ROWS, "z2")]
    assert drop_repeated_weights(older + rescored) == (rescored, len(ROWS))
    assert drop_repeated_weights(rescored + older) == (rescored, len(ROWS))
    both = [Row(**{**asdict(r), "zoo": "z3"}) for r in rescored]
    assert drop_repeated_weights(older + rescored + both) == (rescored, 2 * len(ROWS))


def test_the_rows_the_current_code_computed_are_kept_whichever_file_comes_first() -> None:
    """A glob lists the oldest file first, and --zoo's fresh rows come after the saved ones: neither may
    decide that an older scorer's rows of the same weights stand for them."""
    old = [Row(**{**asdict(r), "detector_key": "k-old"}) for r in _weights(ROWS, "z1")]
    new = [Row(**{**asdict(r), "detector_key": f"k-now+{r.seed}"}) for r in _weights(ROWS, "z2")]
    fresh = [Row(**{**asdict(r), "zoo": "z3"}) for r in new]

    def current(seed: int) -> str:
        return f"k-now+{seed}"

    assert drop_repeated_weights(old + new, current) == (new, len(ROWS))
    assert drop_repeated_weights(new + old, current) == (new, len(ROWS))
    # the current code's rows of another build, or the zoo's rows and their saved copy: the first
    assert drop_repeated_weights(old + new + fresh, current) == (new, 2 * len(ROWS))
    assert drop_repeated_weights(old + new + new, current) == (new, 2 * len(ROWS))
    # the current code before the rows with every class's evidence, and those before the first
    partial = [Row(**{**asdict(r), "class_evidence": None}) for r in new]
    assert drop_repeated_weights(old + partial, current) == (partial, len(ROWS))
    assert drop_repeated_weights(old + partial) == (old, len(ROWS))


def test_the_command_prefers_the_current_codes_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr("bench.calibrate.current_detector_key", lambda seed: "k-now")
    old, new = tmp_path / "2026-01-01-old.jsonl", tmp_path / "2026-02-01-new.jsonl"
    old.write_text("".join(json.dumps(asdict(r)) + "\n" for r in _weights(ROWS, "z-old")))
    rows = [Row(**{**asdict(r), "detector_key": "k-now"}) for r in _weights(ROWS, "z-new")]
    new.write_text("".join(json.dumps(asdict(r)) + "\n" for r in rows))
    assert main(["--rows", str(old), str(new), "--slopes", "1.5", "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["builds"] == {"z-new": 12}
    assert "12 rows dropped" in capsys.readouterr().out


def test_held_out_figures_skip_rows_whose_kind_cannot_be_fitted_without_them(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Leaving out the only build of a kind (or its only backdoored model) leaves no centre to fit:
    those rows are not held out and counted, and a figure with no row left is n/a, not a crash."""
    gray = [r for r in ROWS if r.kind == "gray"]
    colour = [Row(**{**asdict(r), "zoo": "z2"}) for r in ROWS if r.kind == "colour"]
    current = Calibration(slope=1.5, centres={"gray": 4.0, "colour": 8.3})
    result = report(gray + colour, current, 0.85, [1.0, 1.5])
    assert result["not_held_out"]["leave_one_build_out"] == {"gray": 6, "colour": 6}
    assert all(f["leave_one_build_out"] is None for f in result["fits"])
    assert result["chosen_by"] == "leave_one_model_out"
    assert all(f["held_out_by_kind"]["gray"] is not None for f in result["fits"])

    # a third build of gray rows: the gray rows can be held out, the colour build's cannot
    third = [Row(**{**asdict(r), "zoo": "z3", "model": f"z3-{r.model}", "evidence": r.evidence + 1,
                    "class_evidence": (r.evidence + 1,)}) for r in gray]  # fmt: skip
    result = report(gray + colour + third, current, 0.85, [1.5])
    assert result["chosen_by"] == "leave_one_build_out"
    assert result["not_held_out"]["leave_one_build_out"] == {"colour": 6}
    crossed = [(fit(third, 1.5), gray), (fit(gray, 1.5), third)]
    expected = float(np.mean([-math.log(p if r.backdoored else 1 - p) for calibration, rows in crossed
                              for r, p in zip(rows, map(calibration.probability, rows), strict=True)]))  # fmt: skip
    assert result["fits"][0]["leave_one_build_out"] == pytest.approx(expected)

    # one backdoored gray model: leaving it out leaves only clean gray rows; so for either colour model
    lone = _rows("gray", [1.0, 2.0, 5.0], [False, False, True]) + _rows("colour", [5.0, 9.0], [False, True])
    result = report(lone, current, 0.85, [1.5])
    assert result["not_held_out"] == {"leave_one_model_out": {"gray": 1, "colour": 2}}
    assert result["fits"][0]["held_out_by_kind"]["colour"] is None and result["best_slope_by_kind"] == {"gray": 1.5}
    assert held_out_cross_entropy(lone[3:], 1.5, lambda r: r.model) is None
    assert report(lone[1:], current, 0.85, [1.5])["chosen_by"] == "cross_entropy"  # nothing can be held out

    files = [tmp_path / "gray.jsonl", tmp_path / "colour.jsonl"]
    for path, rows in zip(files, (gray, colour), strict=True):
        path.write_text("".join(json.dumps(asdict(r)) + "\n" for r in rows))
    assert main(["--rows", *map(str, files), "--slopes", "1.5"]) == 0
    out = capsys.readouterr().out
    assert "leave one build out: 6 gray rows not held out" in out and "| n/a |" in out
    assert "best by leave one model out" in out


def test_the_command_drops_a_repeated_build_before_fitting(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    first, second = tmp_path / "b1.jsonl", tmp_path / "b2.jsonl"
    first.write_text("".join(json.dumps(asdict(r)) + "\n" for r in _weights(ROWS, "z1")))
    second.write_text("".join(json.dumps(asdict(r)) + "\n" for r in _weights(ROWS, "z2")))
    assert main(["--rows", str(first), str(second), "--slopes", "1.5", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "12 rows" in out and "from 1 zoo build(s)" in out
    assert "12 rows dropped: their weights (sha256) repeat another build's" in out
    assert json.loads((tmp_path / "r.json").read_text())["repeated_rows_dropped"] == 12


def test_each_kind_reports_the_slope_its_own_held_out_rows_prefer() -> None:
    current = Calibration(slope=1.5, centres={"gray": 4.0, "colour": 8.0})
    rows = []
    for kind, centre, slope, seed in (("gray", 4.0, 1.0, 2), ("colour", 8.0, 3.0, 3)):
        evidence, labels = _synthetic(centre=centre, slope=slope, n=1200, seed=seed)
        rows += [
            Row(zoo=f"z{i % 2}", model=f"{kind}-{i}", seed=0, kind=kind, backdoored=bool(y), evidence=float(e),
                detector_key="k", class_evidence=(float(e),))
            for i, (e, y) in enumerate(zip(evidence, labels, strict=True))
        ]  # fmt: skip
    result = report(rows, current, 0.85, [1.0, 3.0])
    assert result["best_slope_by_kind"] == {"gray": 1.0, "colour": 3.0}
    assert all(set(f["held_out_by_kind"]) == {"gray", "colour"} for f in result["fits"])


def test_the_command_fits_saved_rows_and_writes_a_json_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(asdict(r)) + "\n" for r in ROWS))
    assert main(["--rows", str(rows), "--slopes", "1,1.5", "--json", str(tmp_path / "report.json")]) == 0
    out = capsys.readouterr().out
    assert "12 rows (backdoored/clean: gray 3/3, colour 3/3) from 1 zoo build(s)" in out
    assert "| 1.5 |" in out and "current constants" in out
    assert json.loads((tmp_path / "report.json").read_text())["best"]["slope"] in (1.0, 1.5)


def test_saved_rows_keep_every_class_evidence_and_older_rows_load_without(tmp_path: Path) -> None:
    with_classes = Row(**{**asdict(ROWS[0]), "class_evidence": (0.25, ROWS[0].evidence, -3.0)})
    older = Row(**{**asdict(ROWS[1]), "class_evidence": None})
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps(asdict(with_classes)) + "\n" + json.dumps(asdict(older)) + "\n")
    assert read_rows(rows) == [with_classes, older]
    assert read_rows(rows)[1].class_evidence is None


def test_a_gray_rows_lead_is_its_evidence_less_its_strongest_rivals_mean() -> None:
    evidence = (1.0, 6.0, 3.0, -5.0, 2.0, 0.0)
    gray = Row(zoo="z", model="m", seed=0, kind="gray", backdoored=True, evidence=6.0, detector_key="k",
               class_evidence=evidence)  # fmt: skip
    assert gray.lead == pytest.approx(6.0 - (3.0 + 2.0 + 1.0) / 3)
    colour = Row(**{**asdict(gray), "kind": "colour"})
    assert colour.lead == 6.0
    assert Row(**{**asdict(colour), "class_evidence": None}).lead == 6.0
    with pytest.raises(ValueError, match="needs its class_evidence"):
        _ = Row(**{**asdict(gray), "class_evidence": None}).lead


def test_the_command_leaves_out_and_counts_gray_rows_saved_without_class_evidence(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    older = [Row(**{**asdict(r), "model": f"old-{r.model}", "class_evidence": None}) for r in ROWS]
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(asdict(r)) + "\n" for r in ROWS + older))
    assert main(["--rows", str(rows), "--slopes", "1.5", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "18 rows (backdoored/clean: gray 3/3, colour 6/6)" in out
    assert "6 gray rows left out: saved without class_evidence, which their lead needs" in out
    assert json.loads((tmp_path / "r.json").read_text())["rows_without_lead"] == {"gray": 6}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"zoo": "z"}\n', "rows.jsonl:1: not a calibration row"),
        ("not json\n", "rows.jsonl:1: not a calibration row"),
        (json.dumps({**asdict(ROWS[0]), "kind": "infrared"}) + "\n", "rows.jsonl:1: kind must be one of"),
        ("[1, 2]\n", "rows.jsonl:1: not a calibration row"),
        (json.dumps({**asdict(ROWS[0]), "class_evidence": ["a"]}) + "\n", "rows.jsonl:1: not a calibration row"),
        (
            json.dumps({**asdict(ROWS[0]), "class_evidence": [0.5, ROWS[0].evidence + 1]}) + "\n",
            "rows.jsonl:1: evidence must be the largest of class_evidence",
        ),
        (
            json.dumps({**asdict(ROWS[0]), "class_evidence": [ROWS[0].evidence, math.nan]}) + "\n",
            "rows.jsonl:1: class_evidence must be finite numbers",
        ),
    ],
)
def test_bad_rows_are_refused_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture, content: str, message: str
) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(content)
    assert main(["--rows", str(rows)]) == 2
    assert message in capsys.readouterr().err


def test_no_rows_and_a_missing_zoo_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([]) == 2
    assert "no rows" in capsys.readouterr().err
    older_gray = tmp_path / "older-gray.jsonl"
    older_gray.write_text(
        "".join(json.dumps({**asdict(r), "class_evidence": None}) + "\n" for r in ROWS if r.kind == "gray")
    )
    assert main(["--rows", str(older_gray), "--json", str(tmp_path / "r.json")]) == 2
    assert "no rows with a lead" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
    assert main(["--zoo", str(tmp_path)]) == 2
    assert "manifest.json not found" in capsys.readouterr().err


def test_bad_options_and_an_unwritable_report_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(asdict(r)) + "\n" for r in ROWS))
    assert main(["--rows", str(rows), "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err
    assert main(["--rows", str(rows), "--slopes", "-1"]) == 2
    assert "slopes must be positive" in capsys.readouterr().err
    assert main(["--rows", str(rows), "--json", str(tmp_path / "missing" / "report.json")]) == 2
    assert "cannot write" in capsys.readouterr().err
    # a refused run creates no --save folder
    assert main(["--zoo", str(tmp_path / "no-zoo"), "--save", str(tmp_path / "saved" / "rows.jsonl")]) == 2
    assert "manifest.json not found" in capsys.readouterr().err
    assert not (tmp_path / "saved").exists()
