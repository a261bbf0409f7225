"""The verdict over several saliency seeds (``scan --seeds N``, ``bench.detection --seeds``): the run
whose P(backdoored) is the median of the runs'. The verdict only grows with P, so with an odd number
of runs the median run's verdict is the one most runs agree with (the middle one if all three differ),
and it comes with that run's maps, scores and trigger estimates, which a vote alone would not have.
"""

from __future__ import annotations

from collections.abc import Sequence


def median_run(probabilities: Sequence[float]) -> int:
    """The index of the run at the median probability; an odd number of runs, so it is one of them
    (ties go to the earlier run)."""
    if len(probabilities) % 2 == 0:
        raise ValueError(f"the median of {len(probabilities)} runs is not one of them; use an odd number of seeds")
    order = sorted(range(len(probabilities)), key=lambda i: (probabilities[i], i))
    return order[len(order) // 2]


def verdicts_split(verdicts: Sequence[str]) -> bool:
    """Whether some runs call the model clean and others flag it: the seeds disagree on what the exit
    code says."""
    return len({verdict == "clean" for verdict in verdicts}) > 1
