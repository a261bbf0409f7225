"""Across-class statistics and the model-level decision: anomaly index, probability, verdict."""

from __future__ import annotations

import math

import torch

MAD_CONSISTENCY = 1.4826  # makes the median absolute deviation estimate sigma for normal data


def anomaly_index(values: torch.Tensor, *, floor: float = 1e-3) -> torch.Tensor:
    """(x - median) / (1.4826 * MAD), signed so the suspicious (large) side is positive.

    ``floor`` bounds the MAD from below: with ten classes, a MAD of almost zero would turn noise into
    huge indices.
    """
    median = values.median()
    mad = (values - median).abs().median()
    return (values - median) / (MAD_CONSISTENCY * mad.clamp_min(floor))


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
