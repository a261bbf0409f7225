"""The verdict over several saliency seeds (``scan --seeds N``, ``bench.detection --seeds``): the run
whose P(backdoored) is the median of the runs'. The verdict only grows with P, so with an odd number
of runs the median run's verdict is the one most runs agree with (the middle one if all three differ),
and it comes with that run's maps, scores and trigger estimates, which a vote alone would not have.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def median_run(probabilities: Sequence[float]) -> int:
    """The index of the run at the median probability; an odd number of runs, so it is one of them
    (runs of equal probability are ordered by index)."""
    if len(probabilities) % 2 == 0:
        raise ValueError(f"the median of {len(probabilities)} runs is not one of them; use an odd number of seeds")
    order = sorted(range(len(probabilities)), key=lambda i: (probabilities[i], i))
    return order[len(order) // 2]


def verdicts_split(verdicts: Sequence[str]) -> bool:
    """Whether some runs call the model clean and others flag it: the seeds disagree on what the exit
    code says."""
    return len({verdict == "clean" for verdict in verdicts}) > 1


def combine_seed_reports(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """report.json for ``scan --seeds N``, from the N runs' reports in seed order (each as
    ``worker.report.build_report`` wrote it, its seed in ``config.saliency.seed``).

    One run: its report unchanged. Several: the median run's report, with ``seconds`` the runs' total
    (what the verdict cost), ``borderline`` whether the runs split across the clean line (the band
    around the threshold no longer applies: the other seeds were run, not guessed at), and ``seeds``,
    one ``{"seed", "verdict", "probability"}`` per run, after ``borderline``.
    """
    if len(reports) == 1:
        return dict(reports[0])
    median = reports[median_run([report["probability"] for report in reports])]
    runs = [
        {"seed": r["config"]["saliency"]["seed"], "verdict": r["verdict"], "probability": r["probability"]}
        for r in reports
    ]
    combined: dict[str, Any] = {}
    for key, value in median.items():
        combined[key] = value
        if key == "borderline":
            combined["seeds"] = runs
    combined["borderline"] = verdicts_split([run["verdict"] for run in runs])
    combined.setdefault("seeds", runs)
    combined["seconds"] = round(sum(report["seconds"] for report in reports), 3)
    return combined
