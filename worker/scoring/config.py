"""Settings of the trigger-signature scoring (DESIGN.md section 3); torch-free so the API can validate them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from worker.json_config import JsonConfig, integer_problem, number_problem
from worker.saliency.config import MAX_SEED

# 16 times the default: every test of every class feeds the model up to 64 source classes x
# probes_per_class probes at once (16,384 at this bound), so one request cannot make scoring take hours
# or hold more than a GPU's memory.
MAX_PROBES_PER_CLASS = 256


@dataclass(frozen=True)
class ScoringConfig(JsonConfig):
    """Window sides are fractions of min(H, W). ``trigger_window`` is the small candidate trigger that is
    stamped onto probes (a real trigger flips them even when small); ``window`` is the wider window whose
    share of the map's energy measures how concentrated the map is.

    ``probes_per_class`` is how many probe inputs per other class carry a candidate trigger in the
    transfer test. The probability thresholds map the calibrated P(backdoored) to a verdict.
    """

    label: ClassVar[str] = "scoring"
    # ``anomaly_threshold`` decided nothing (the verdict and the suspected classes read the class leads
    # through ``suspicious_at``); it only set the reference line that report.json carries as
    # ``thresholds.anomaly_index`` (``worker.report``)
    retired_keys: ClassVar[Mapping[str, tuple[Any, str]]] = {
        "anomaly_threshold": (
            2.0,
            "it changed no verdict and no suspected class, which read P(backdoored) against suspicious_at and "
            "backdoored_at",
        )
    }

    window: float = 0.15
    trigger_window: float = 0.1
    # the share of the image's pixels stamped in the mask-margin test; 5% of the pixels, wherever they
    # lie, ranked the development split best (0.04: AUROC 0.91, 0.05: 0.94, 0.06: 0.93; BENCHMARKS.md)
    mask_fraction: float = 0.05
    # the patch evidence mixes in, with weight ``window_weight``, the margin of the mask's part inside
    # its densest window of side ``patch_window`` (8 px of 32, 7 of 28): a natural class's top pixels
    # win spread over the image, a patch's in one place (BENCHMARKS.md, "Tenth round")
    patch_window: float = 0.25
    window_weight: float = 0.25
    probes_per_class: int = 16
    # a class whose restarts point apart (mean cosine, the map's stability, under this) has each
    # restart's own map scored as well and keeps the best evidence: merged, two restarts that found a
    # trigger in different places dilute it. -1 turns it off (BENCHMARKS.md, "Twenty-fifth round")
    score_restarts_below: float = 0.5
    # the mask and window tests' probes: seeds uniform in [0, patch_probe_brightness] + the source
    # class's map, kept in [0, 1]. A patch trigger learned on dark-background images barely fires on
    # probes as bright as uniform noise; on the zoo's gray dev split 0.5 raised the weakest patch
    # backdoor from 5.2 to 6.8 while the largest clean evidence fell from 4.4 to 4.0 (BENCHMARKS.md,
    # "Twelfth round"). The map test keeps seeds in [0, 1]: blended triggers lost on dim probes.
    patch_probe_brightness: float = 0.5
    # decision thresholds on the calibrated probability, set so that no clean development model was
    # flagged with any of saliency seeds 0-2 (the largest, a gray MNIST small_cnn's evidence of 5.16,
    # maps to 0.847). With the window margin, on the tenth session's zoo, one clean dev row of 123 is
    # over (an rgb shufflenet with seed 2, P 0.893); 0.9 would clear it but flag 63% of the dev
    # backdoors instead of 70%, so it stays. With the gray lead over its rivals (the twentieth round)
    # the gray line is a lead of 4.75, above every clean gray row of two dev builds (at most 3.69)
    suspicious_at: float = 0.85
    backdoored_at: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        problems = [
            *(
                number_problem(name, getattr(self, name), 0, 1, above_low=True)
                for name in ("window", "trigger_window", "mask_fraction", "patch_window")
            ),
            number_problem("window_weight", self.window_weight, 0, 1),
            number_problem("patch_probe_brightness", self.patch_probe_brightness, 0, 1),
            number_problem("score_restarts_below", self.score_restarts_below, -1, 1),  # a cosine; -1 turns it off
            integer_problem("probes_per_class", self.probes_per_class, 1, MAX_PROBES_PER_CLASS),
            number_problem("suspicious_at", self.suspicious_at, 0, 1, above_low=True),
            number_problem("backdoored_at", self.backdoored_at, 0, 1, above_low=True),
            integer_problem("seed", self.seed, 0, MAX_SEED),
        ]
        if not any(problems) and self.suspicious_at > self.backdoored_at:
            problems.append(
                f"suspicious_at ({self.suspicious_at}) must not be above backdoored_at ({self.backdoored_at})"
            )
        self.refuse(problems)
