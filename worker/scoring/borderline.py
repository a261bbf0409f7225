"""Whether a verdict is one that another saliency seed could turn: report.json's ``borderline``. ``scan``,
``submit --wait`` and ``status`` note it on stderr, the report's and the dashboard's verdict banners
show it, and the service stores it on the audit (``AuditPublic.borderline``, ``GET /audits?borderline=``).

Kept out of the scorer's own modules: the benchmark keys its cached results by a hash of the code the
detector imports, and this advice does not change what the detector computes. Torch-free (the
calibration it reads is too), so the migration that backfills ``audits.borderline`` runs in the API
image, which has no torch.
"""

from __future__ import annotations

import math

from worker.scoring.calibration import LEAD_SLOPE

# How far a model's largest lead moves between saliency seeds: on the sixteenth session's 94 dev
# models with seeds 0-2, the range over the three seeds of the models within 2 of their kind's line
# is 0.23 / 0.13 at the median and 1.05 / 0.65 at the 90th percentile (gray / rgb; BENCHMARKS.md,
# "Sixteenth round"); the gray lead over its rivals, on two later dev builds, 0.43 and 1.06
# ("Twentieth round").
SEED_SPREAD = 1.0


def near_the_line(probability: float, suspicious_at: float) -> bool:
    """Whether ``probability``'s lead lies within ``SEED_SPREAD`` of the lead that maps to
    ``suspicious_at``. Both lie on the scorer's logistic, so their distance in lead is their
    distance in log-odds over its slope."""
    if not (0 < probability < 1 and 0 < suspicious_at < 1):
        return False
    distance = abs(_log_odds(probability) - _log_odds(suspicious_at))
    return distance <= LEAD_SLOPE * SEED_SPREAD


def _log_odds(p: float) -> float:
    return math.log(p / (1 - p))
