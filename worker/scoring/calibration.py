"""The calibration of the scorer's evidence: the logistic that maps a model's strongest evidence to
P(backdoored). Torch-free, so the API image (no torch) can place a stored probability against it: the
migration that backfills ``audits.borderline`` does (``worker.scoring.borderline``)."""

from __future__ import annotations

# Evidence -> probability: a logistic fitted on the development split (58 models, 33 clean; the rows
# of saliency seeds 0, 1 and 2 pooled), with one slope and a centre per input kind. A stamped colour
# pixel sets three values, and clean colour models reach margins (up to 8.4) that gray backdoors start
# below: one centre would rank the two kinds against each other instead of each against its own clean
# models. Leave-one-model-out cross-entropy chose the slope (1: 0.268, 1.25: 0.253, 1.5: 0.248,
# 2: 0.258); BENCHMARKS.md, "Seventh round". ``bench.calibrate`` refits them on later builds.
EVIDENCE_SLOPE = 1.5
# gray: single-channel inputs; colour: every other channel count (fitted on 3-channel models)
EVIDENCE_CENTRES = {"gray": 4.02, "colour": 8.33}
