"""The borderline band around the suspicious threshold: one seed's spread of evidence either side."""

from __future__ import annotations

import math
import subprocess
import sys

from worker.scoring import borderline
from worker.scoring.borderline import SEED_SPREAD, near_the_line
from worker.scoring.calibration import LEAD_SLOPE


def _moved(p: float, evidence: float) -> float:
    """The probability of evidence ``evidence`` above the evidence of ``p`` on the scorer's logistic."""
    return 1 / (1 + math.exp(-(math.log(p / (1 - p)) + LEAD_SLOPE * evidence)))


def test_the_band_is_one_seed_spread_of_evidence_either_side_of_the_threshold() -> None:
    assert near_the_line(0.85, 0.85)
    for side in (1, -1):
        assert near_the_line(_moved(0.85, side * 0.99 * SEED_SPREAD), 0.85)
        assert not near_the_line(_moved(0.85, side * 1.01 * SEED_SPREAD), 0.85)
    assert not near_the_line(0.999, 0.85) and not near_the_line(0.2, 0.85)


def test_certain_probabilities_and_thresholds_are_never_borderline() -> None:
    assert not near_the_line(1.0, 0.85) and not near_the_line(0.0, 0.85)
    assert not near_the_line(0.99, 1.0)


def test_the_band_uses_the_scorers_slope_without_importing_torch() -> None:
    # the backfill migration imports this module in the API image, which has no torch
    assert borderline.LEAD_SLOPE == LEAD_SLOPE
    check = "import sys, worker.scoring.borderline; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", check], check=True)
