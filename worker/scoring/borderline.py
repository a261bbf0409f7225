"""Whether a verdict is one that another saliency seed could turn: report.json's ``borderline``. ``scan``,
``submit --wait`` and ``status`` note it on stderr, the report's and the dashboard's verdict banners
show it, and the service stores it on the audit (``AuditPublic.borderline``, ``GET /audits?borderline=``).

Kept out of the scorer's own modules: the benchmark keys its cached results by a hash of the code the
detector imports, and this advice does not change what the detector computes. Torch-free, so the
migration that backfills ``audits.borderline`` runs in the API image, which has no torch.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path


def _scorer_constant(name: str) -> float:
    """The number ``name`` is assigned at the top of ``worker/scoring/score.py``, read from its source:
    importing the scorer imports torch, and moving the constant out of it would change the code hash
    the benchmark keys its cached results by. One copy of the calibration, in the scorer."""
    source = Path(__file__).with_name("score.py").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return float(ast.literal_eval(node.value))
    raise LookupError(f"worker/scoring/score.py assigns no literal {name}")


# the slope of the scorer's evidence -> probability logistic (``worker.scoring.score.EVIDENCE_SLOPE``)
EVIDENCE_SLOPE = _scorer_constant("EVIDENCE_SLOPE")

# How far a model's largest evidence moves between saliency seeds: on the sixteenth session's 94 dev
# models with seeds 0-2, the range over the three seeds of the models within 2 of their kind's line
# is 0.23 / 0.13 at the median and 1.05 / 0.65 at the 90th percentile (gray / rgb; BENCHMARKS.md,
# "Sixteenth round").
SEED_SPREAD = 1.0


def near_the_line(probability: float, suspicious_at: float) -> bool:
    """Whether ``probability``'s evidence lies within ``SEED_SPREAD`` of the evidence that maps to
    ``suspicious_at``. Both lie on the scorer's logistic, so their distance in evidence is their
    distance in log-odds over its slope."""
    if not (0 < probability < 1 and 0 < suspicious_at < 1):
        return False
    distance = abs(_log_odds(probability) - _log_odds(suspicious_at))
    return distance <= EVIDENCE_SLOPE * SEED_SPREAD


def _log_odds(p: float) -> float:
    return math.log(p / (1 - p))
