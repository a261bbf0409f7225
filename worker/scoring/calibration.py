"""The calibration of the scorer: each class's *lead* (its evidence, less a share of its strongest
rivals' evidence) and the logistic that maps the model's largest lead to P(backdoored). Torch-free, so
the API image (no torch) can place a stored probability against it: the migration that backfills
``audits.borderline`` does (``worker.scoring.borderline``), and ``bench.calibrate`` refits it on saved
rows.
"""

from __future__ import annotations

from collections.abc import Sequence

# Lead -> probability: a logistic with one slope and a centre per input kind. A stamped colour pixel
# sets three values, and clean colour models reach margins (up to 8.4) that gray backdoors start below:
# one centre would rank the two kinds against each other instead of each against its own clean models.
# The slope was chosen in the seventh round (leave one model out: 1: 0.268, 1.25: 0.253, 1.5: 0.248,
# 2: 0.258) and every refit since has kept it; the colour centre is the seventh round's, the gray
# centre was refitted with the gray lead (BENCHMARKS.md, "Twentieth round").
LEAD_SLOPE = 1.5
# gray: single-channel inputs; colour: every other channel count (fitted on 3-channel models)
LEAD_CENTRES = {"gray": 3.59, "colour": 8.33}

# A class's lead is its evidence less RIVAL_WEIGHTS[kind] times the mean evidence of the RIVALS
# strongest other classes. On gray digits and garments a clean model's natural class, the false
# positive of every build, wins the patch test with several rivals close behind it (MNIST strokes are
# shared between digits), while a trigger belongs to its target alone. On two gray dev builds the lead
# lifted AUROC by 0.02-0.04 with every seed and held-out cross-entropy from 0.262 to 0.170. On colour
# models it costs (dev AUROC 0.97-0.98 -> 0.91-0.93): their backdoored models' runner-up classes are
# the strong ones, so colour keeps the evidence as it is (weight 0). BENCHMARKS.md, "Twentieth round".
RIVALS = 3
RIVAL_WEIGHTS = {"gray": 1.0, "colour": 0.0}


def class_leads(evidence: Sequence[float], kind: str) -> list[float]:
    """Each class's evidence less ``RIVAL_WEIGHTS[kind]`` times the mean of its ``RIVALS`` strongest
    rivals' evidence. The order of the classes is kept: a class with more evidence has weaker rivals."""
    weight = RIVAL_WEIGHTS[kind]
    if weight == 0 or len(evidence) < 2:
        return [float(e) for e in evidence]
    # any class's strongest rivals are among the RIVALS + 1 strongest classes
    strongest = sorted(range(len(evidence)), key=lambda k: -evidence[k])[: RIVALS + 1]
    leads = []
    for k, own in enumerate(evidence):
        rivals = [evidence[j] for j in strongest if j != k][:RIVALS]
        leads.append(float(own) - weight * sum(rivals) / len(rivals))
    return leads
