"""Across-class statistics and the model-level decision: anomaly index, probability, verdict."""

from __future__ import annotations

import math

import torch

MAD_CONSISTENCY = 1.4826  # makes the median absolute deviation estimate sigma for normal data
# The MAD rule's customary outlier line (Neural Cleanse flags an index above 2, about 95% confidence
# under normality). Our scorer reports the index and decides nothing on it; report.json carries this
# line as ``thresholds.anomaly_index`` for the charts that draw the index.
MAD_OUTLIER_INDEX = 2.0


def median(values: torch.Tensor) -> torch.Tensor:
    """The median of a 1-D tensor: the mean of the two middle values when their count is even, as
    ``np.median`` and Neural Cleanse's reference code take it. ``torch.median`` returns the lower one."""
    ordered = values.flatten().sort().values
    n = len(ordered)
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2


def anomaly_index(values: torch.Tensor, *, floor: float = 1e-3) -> torch.Tensor:
    """(x - median) / (1.4826 * MAD), signed so the large side is positive; the MAD outlier rule of
    Neural Cleanse (Wang et al., S&P 2019), used by our scorer's concentration index and by the
    Neural Cleanse baseline (on the small side, negated). Both medians are true medians (``median``).

    ``floor`` bounds the MAD from below: with ten classes, a MAD of almost zero would turn noise into
    huge indices.
    """
    centre = median(values)
    mad = median((values - centre).abs())
    return (values - centre) / (MAD_CONSISTENCY * mad.clamp_min(floor))


def backdoor_probability(evidence: float, *, centre: float, slope: float) -> float:
    """A logistic map from the largest class lead (``worker.scoring.calibration``) to P(backdoored)."""
    return 1.0 / (1.0 + math.exp(-slope * (evidence - centre)))


def verdict_for(probability: float, *, suspicious_at: float, backdoored_at: float) -> str:
    """Map P(backdoored) to a verdict with two thresholds (ours and every baseline's). NaN is refused:
    it compares false with both thresholds and would read as clean."""
    if math.isnan(probability):
        raise ValueError("P(backdoored) is NaN: the detector's statistics are not finite, so there is no verdict")
    if probability >= backdoored_at:
        return "backdoored"
    if probability >= suspicious_at:
        return "suspicious"
    return "clean"
