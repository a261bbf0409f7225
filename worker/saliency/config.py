"""Every tunable of the input-agnostic saliency engine, in one typed, validated config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from worker.json_config import JsonConfig, integer_problem, number_problem, shown

SeedDistribution = Literal["uniform", "gaussian", "lowfreq"]
Loss = Literal["ce", "margin"]
StepRule = Literal["linf", "adam"]
Norm = Literal["l2", "linf"]
Surface = Literal["sphere", "ball"]
RestartMerge = Literal["mean", "best", "aligned"]

# Seeds go to torch generators (the engine's as seed * 1_000_003 + class index, which must fit 64 bits);
# 2**32 - 1 is the usual range and leaves ``scan --seeds N`` room to count up.
MAX_SEED = 2**32 - 1

# Upper bounds of the sizes and counts a user can set, 16-50 times the defaults: far above anything
# measured (BENCHMARKS.md tried at most 100 + 20 steps of 16 seeds), and low enough that one audit
# request cannot hold a GPU worker for hours. The cost of a map grows with iterations x restarts x
# seeds_per_step, so each is bounded on its own.
MAX_ITERATIONS = 2000  # default 40
MAX_REFINE_ITERATIONS = 1000  # default 10
MAX_SEEDS_PER_STEP = 256  # default 8
MAX_RESTARTS = 32  # default 2
MAX_FIDELITY_SEEDS = 4096  # default 128
MAX_CLASS_BATCH = 1024  # default 64; a batch of every class of an ImageNet model


@dataclass(frozen=True)
class SaliencyConfig(JsonConfig):
    """Settings of the map engine (DESIGN.md section 2).

    ``radius`` is the perturbation budget as an RMS value per element, so one number means the same on
    1x28x28 and 3x224x224 inputs: the l2 budget is ``radius * sqrt(C*H*W)``; for the l-inf norm it is
    ``radius`` itself. ``step_size`` is in pixel units (1/255 = one intensity level per step).
    """

    label: ClassVar[str] = "saliency"

    seed_distribution: SeedDistribution = "uniform"
    loss: Loss = "ce"
    # DESIGN.md section 7: Adam-moment steps saturated maps into sign patterns; an l-inf normalised
    # gradient step keeps their spatial structure, so it is the default.
    step_rule: StepRule = "linf"
    norm: Norm = "l2"
    # The map grows inside the ball instead of living on the sphere. Projected onto the sphere, the
    # first step (one batch of seeds' mean gradient) was blown up to the full radius and the later
    # steps could only bend it: on the example model two restarts of a class agreed at a mean cosine
    # of 0.43, and which seed was drawn moved dev AUROC from 0.74 to 0.93. Grown from zero in the
    # ball, the steps add up (restarts agree at 0.77-0.88), and 8 intensity levels per step bring the
    # maps to about half the radius or more in 40 steps (BENCHMARKS.md, "Sixth round").
    surface: Surface = "ball"
    radius: float = 0.1
    # 40 + 10 steps of 8 seeds: a quarter of the cost of 100 + 20 steps of 16 seeds, and on the zoo's
    # development split it ranked models as well (AUROC 0.94 vs 0.90; BENCHMARKS.md, "Defaults by measurement")
    iterations: int = 40
    seeds_per_step: int = 8
    restarts: int = 2
    # How the restarts' maps become the one the refine phase starts from. Two restarts can find the same
    # trigger with opposite signs (a checkerboard in opposite phase: their cosine below zero), and their
    # mean cancels it. "aligned" averages, per class, the restarts whose cosine with the best one (the
    # highest mean class probability over the last ``quality_steps`` steps, read from the steps' own
    # forward passes: no extra cost) is positive; "mean" averages all of them; "best" keeps the best
    # alone. On the gray dev models "aligned" and "best" both lifted seed 1's AUROC from 0.923 to 0.95,
    # and "aligned" left the clean models' evidence where "mean" had it (BENCHMARKS.md, "Eighteenth round").
    restart_merge: RestartMerge = "aligned"
    quality_steps: int = 10
    refine_iterations: int = 10
    step_size: float = 8 / 255
    fidelity_seeds: int = 128
    class_batch: int = 64  # classes per batched pass; bounds memory on many-class models
    seed: int = 0

    def __post_init__(self) -> None:
        problems = [
            number_problem("radius", self.radius, 0, 1, above_low=True),  # RMS per element, pixels in [0, 1]
            integer_problem("iterations", self.iterations, 1, MAX_ITERATIONS),
            integer_problem("seeds_per_step", self.seeds_per_step, 1, MAX_SEEDS_PER_STEP),
            integer_problem("restarts", self.restarts, 1, MAX_RESTARTS),
            integer_problem("quality_steps", self.quality_steps, 1, MAX_ITERATIONS),
            integer_problem("refine_iterations", self.refine_iterations, 0, MAX_REFINE_ITERATIONS),
            number_problem("step_size", self.step_size, 0, 1, above_low=True),  # pixel units
            integer_problem("fidelity_seeds", self.fidelity_seeds, 1, MAX_FIDELITY_SEEDS),
            integer_problem("class_batch", self.class_batch, 1, MAX_CLASS_BATCH),
            integer_problem("seed", self.seed, 0, MAX_SEED),
        ]
        self.refuse(problems)
        for name, allowed in (
            ("seed_distribution", SeedDistribution),
            ("loss", Loss),
            ("step_rule", StepRule),
            ("norm", Norm),
            ("surface", Surface),
            ("restart_merge", RestartMerge),
        ):
            if getattr(self, name) not in allowed.__args__:  # type: ignore[attr-defined]
                choices = ", ".join(allowed.__args__)  # type: ignore[attr-defined]
                raise ValueError(
                    f"invalid {self.label} config: {name} must be one of {choices}, got {shown(getattr(self, name))}"
                )
