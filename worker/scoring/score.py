"""Trigger-signature scoring of a model's class maps (DESIGN.md section 3).

Every test runs on probe inputs that stand for the other classes. Probes are data-free by default:
fresh seeds pushed toward each other class by that class's own map; user-supplied clean images are
added when given. The stamping tests (mask and window margins) draw their seeds dimmer, in
[0, ``patch_probe_brightness``]: a patch trigger learned on dark-background images barely fires on
probes as bright as uniform noise (BENCHMARKS.md, "Twelfth round").

- *Mask margin* (the patch hypothesis): the map's most energetic pixels (``mask_fraction`` of the
  image, wherever they lie) are stamped at full intensity with the map's sign onto the probes, and the
  mean logit margin of the class over the probes' best other class is taken. A backdoor target's map
  holds its trigger in a few pixels, and a few stamped pixels override any input; a clean class needs
  far more of the image. The pixels need not be contiguous, so strided stems' grid artefacts and
  random trigger positions do not hide the trigger, and the margin, unlike a flip rate, keeps ranking
  classes whose masks flip every probe (it is clipped only at +-10 logits per probe).
- *Map margin* (the spread-trigger hypothesis): the class's whole map is added to the probes (pixels
  kept in [0, 1]) and the same mean clipped margin is taken. A blended or sinusoid trigger covers the
  image faintly, so its top 5% of pixels, stamped, carry little of it; the whole map carries it all.
  The same test gives *dominance*, the fraction of probes that flip, reported as a feature.
- *Window margin* (the patch is in one place): the same test with only the mask's pixels inside its
  densest small window (``patch_window`` of the side). A patch trigger keeps most of its margin; a
  natural class whose strongest pixels are spread over the image loses it.
- *Evidence* of a class: the larger of its patch margin (the mask margin, with the window margin mixed
  in at ``window_weight``) and its map margin (BENCHMARKS.md, "Seventh round" and "Tenth round"). Where
  the class's restarts disagree (stability under ``score_restarts_below``), each restart's own map is
  tested too and the class keeps the best evidence (BENCHMARKS.md, "Twenty-fifth round").
- *Lead* of a class: its evidence less the mean evidence of its three strongest rivals, on gray models
  (on colour models the evidence itself); the largest lead, through the calibration's logistic, is
  P(backdoored) (``worker.scoring.calibration``; BENCHMARKS.md, "Twentieth round").
- *Trigger window* (reported; the trigger estimate the report draws): the map's most energetic small
  window, stamped (its mask and saturated pattern) onto the probes; the fraction that flips is its
  *transfer rate*. With the map's concentration on a wider window, it was the first rounds' evidence
  (BENCHMARKS.md); contiguous windows miss scattered and grid-spread triggers, so it no longer decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from worker.detectors.base import DetectorInputError, non_finite_classes
from worker.margins import class_margins
from worker.model_state import eval_mode
from worker.saliency.engine import ClassMap
from worker.saliency.seeds import draw_seeds
from worker.scoring.calibration import LEAD_CENTRES, LEAD_SLOPE, class_leads
from worker.scoring.config import ScoringConfig
from worker.scoring.features import (
    Window,
    best_windows,
    energy,
    shared_hotspot,
    trigger_pattern,
    window_size,
)
from worker.scoring.verdict import anomaly_index, backdoor_probability, verdict_for

# Both margins are clipped to +-MARGIN_CAP logits per probe, so one runaway probe cannot carry the mean.
MARGIN_CAP = 10.0


def input_kind(input_shape: tuple[int, ...] | list[int]) -> str:
    """The calibration a model's inputs take: ``gray`` for one channel, ``colour`` for any other count."""
    return "gray" if input_shape[0] == 1 else "colour"


@dataclass
class TriggerEstimate:
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
    mask: torch.Tensor  # (H, W) in {0, 1}
    pattern: torch.Tensor  # (C, H, W) in [0, 1]; only meaningful under the mask


@dataclass
class ClassScore:
    class_index: int
    score: float  # the evidence that this class is a backdoor target (higher = more suspicious)
    anomaly_index: float  # of the window concentration across classes
    success_rate: float
    stability: float
    features: dict[str, float]
    trigger: TriggerEstimate
    suspected: bool = False


@dataclass
class AuditScore:
    verdict: str
    probability: float
    suspected_classes: list[int]
    classes: list[ClassScore] = field(default_factory=list)


@dataclass
class _Probes:
    """Probe inputs, the model's predictions on them, and the class each probe stands for: the class
    whose map pushed its seed, or the predicted class of a user's clean image."""

    inputs: torch.Tensor
    predictions: torch.Tensor
    sources: torch.Tensor

    def standing_for_others(self, k: int) -> torch.Tensor:
        """The probes that stand for a class other than k: the inputs k's map or mask must win."""
        return self.inputs[self.sources != k]


@torch.no_grad()
def _probes(
    model: nn.Module,
    raw: torch.Tensor,
    config: ScoringConfig,
    device: torch.device,
    clean_images: torch.Tensor | None,
    brightness: float = 1.0,
) -> _Probes:
    """Seeds + each class's map, plus any clean images. Below full ``brightness`` the seeds are
    uniform in [0, brightness] and the probes are kept in [0, 1]."""
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed)
    k = raw.shape[0]
    # bound the probe set on many-class models: at most 64 source classes
    sources = torch.randperm(k, generator=torch.Generator().manual_seed(config.seed))[:64].to(device)
    n = config.probes_per_class
    seeds = draw_seeds("uniform", (len(sources), n, *raw.shape[1:]), generator=generator, device=device)
    inputs = (brightness * seeds + raw[sources][:, None]).flatten(0, 1)
    if brightness < 1:
        inputs = inputs.clamp(0, 1)
    sources = sources.repeat_interleave(n)
    if clean_images is not None:
        inputs = torch.cat([inputs, clean_images.to(device)])
    logits = model(inputs)
    if not bool(torch.isfinite(logits).all()):
        bad = int((~torch.isfinite(logits)).any(dim=1).sum())
        raise DetectorInputError(_not_finite(f"the model's logits on {bad} of {len(inputs)} probe inputs"))
    predictions = logits.argmax(dim=1)
    if clean_images is not None:
        sources = torch.cat([sources, predictions[len(sources) :]])
    return _Probes(inputs=inputs, predictions=predictions, sources=sources)


@torch.no_grad()
def _clipped_margins(model: nn.Module, inputs: torch.Tensor, k: int) -> torch.Tensor:
    """Per input, the margin of class k over its best rival, clipped to +-MARGIN_CAP (both margin tests)."""
    margins = class_margins(model(inputs), torch.full((len(inputs),), k, device=inputs.device))
    return margins.clamp(-MARGIN_CAP, MARGIN_CAP)


@torch.no_grad()
def _whole_map_tests(
    model: nn.Module, probes: _Probes, raw: torch.Tensor, classes: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each class k in ``classes``, its whole map added to the other classes' probes (pixels kept in
    [0, 1]): the mean clipped margin of k (the *map margin*) and the fraction of probes that flip to k
    (*dominance*); 0 for the classes not asked for.

    Probes are selected by the class they stand for, not by the model's prediction: a backdoor can
    capture every probe before any map is added (a blended-noise target takes all uniform noise), and
    that must count, not leave nothing to test.
    """
    margins = torch.zeros(raw.shape[0])
    rates = torch.zeros(raw.shape[0])
    for k in classes:
        others = probes.standing_for_others(k)
        if len(others) == 0:
            continue
        margin = _clipped_margins(model, (others + raw[k]).clamp(0, 1), k)
        margins[k] = margin.mean().cpu()
        rates[k] = (margin > 0).float().mean().cpu()
    return margins, rates


def _top_pixel_masks(pixel_energy: torch.Tensor, fraction: float) -> torch.Tensor:
    """For each class, its top ``fraction`` of pixels by energy: (K, H, W) -> (K, 1, H, W) in {0, 1}."""
    classes, height, width = pixel_energy.shape
    count = max(1, round(fraction * height * width))
    top = pixel_energy.flatten(1).topk(count, dim=1).indices
    masks = torch.zeros(classes, height * width, device=pixel_energy.device).scatter_(1, top, 1.0)
    return masks.view(classes, 1, height, width)


def _densest_window_masks(pixel_energy: torch.Tensor, masks: torch.Tensor, side: int) -> torch.Tensor:
    """Each mask cut to the ``side`` x ``side`` window that holds most of its pixels' energy."""
    _, height, width = pixel_energy.shape
    windows, _ = best_windows(pixel_energy * masks[:, 0], side)
    boxes = torch.stack([window.mask(height, width, pixel_energy.device) for window in windows])
    return masks * boxes[:, None]


@torch.no_grad()
def _stamped_margins(
    model: nn.Module, probes: _Probes, raw: torch.Tensor, masks: torch.Tensor, classes: list[int]
) -> torch.Tensor:
    """For each class k in ``classes``, the mean clipped margin of k over the other classes' probes once
    k's mask is stamped with its map's saturated pattern (0 for the classes not asked for)."""
    margins = torch.zeros(raw.shape[0])
    for k in classes:
        others = probes.standing_for_others(k)
        if len(others) == 0:
            continue
        stamped = others * (1 - masks[k]) + trigger_pattern(raw[k]) * masks[k]
        margins[k] = _clipped_margins(model, stamped, k).mean().cpu()
    return margins


@torch.no_grad()
def _transfer_rates(
    model: nn.Module,
    probes: torch.Tensor,
    predictions: torch.Tensor,
    triggers: list[TriggerEstimate],
    device: torch.device,
) -> torch.Tensor:
    """For each class k, the fraction of probes not already in k that k's stamped trigger sends to k."""
    rates = torch.zeros(len(triggers))
    for k, trigger in enumerate(triggers):
        eligible = probes[predictions != k]
        if len(eligible) == 0:
            continue
        mask = trigger.mask.to(device)
        stamped = eligible * (1 - mask) + trigger.pattern.to(device) * mask
        rates[k] = (model(stamped).argmax(dim=1) == k).float().mean().cpu()
    return rates


def _not_finite(what: str) -> str:
    """The message of a scan refused for NaN or infinite numbers: such a model has no verdict (NaN
    compares false with every threshold, so it would read as clean)."""
    return (
        f"NaN or infinite values in {what}: the model cannot be audited and no verdict is given. It computes "
        "non-finite logits on some inputs in [0, 1] (overflowing or corrupted weights, or a division by zero in "
        "its forward pass); check its outputs on random inputs, e.g. model(torch.rand(8, *input_shape))"
    )


def score_audit(
    model: nn.Module,
    maps: list[ClassMap],
    input_shape: tuple[int, int, int],
    *,
    config: ScoringConfig | None = None,
    device: torch.device | str = "cpu",
    clean_images: torch.Tensor | None = None,
) -> AuditScore:
    """Score every class map and decide the model-level verdict. ``maps`` must cover every class, in order."""
    config = config or ScoringConfig()
    device = torch.device(device)
    if [m.class_index for m in maps] != list(range(len(maps))):
        raise ValueError("score_audit needs one map per class, ordered by class index")
    broken = [m.class_index for m in maps if not bool(torch.isfinite(m.raw).all())]
    if broken:
        raise DetectorInputError(_not_finite(f"the saliency maps of classes {broken[:10]}"))
    with eval_mode(model):
        return _score(model, maps, input_shape, config, device, clean_images)


def _score(
    model: nn.Module,
    maps: list[ClassMap],
    input_shape: tuple[int, int, int],
    config: ScoringConfig,
    device: torch.device,
    clean_images: torch.Tensor | None,
) -> AuditScore:
    _, height, width = input_shape
    raw = torch.stack([m.raw for m in maps]).to(device)
    pixel_energy = energy(raw)
    probes = _probes(model, raw, config, device, clean_images)
    # the trigger estimate: each class's best small window, stamped onto the probes (its transfer rate)
    windows, _ = best_windows(pixel_energy, window_size(height, width, config.trigger_window))
    triggers = [_trigger(raw[k], window, height, width) for k, window in enumerate(windows)]
    transfer = _transfer_rates(model, probes.inputs, probes.predictions, triggers, device)
    # how concentrated each map is (energy share of its best wider window), against the other classes
    _, concentration = best_windows(pixel_energy, window_size(height, width, config.window))
    anomaly = anomaly_index(concentration.cpu(), floor=0.01)
    patch_probes = (
        probes
        if config.patch_probe_brightness == 1
        else _probes(model, raw, config, device, clean_images, brightness=config.patch_probe_brightness)
    )
    tests = _class_tests(model, probes, patch_probes, raw, config, list(range(len(maps))))
    # a class whose restarts disagree keeps the best of its merged map's and its restarts' own evidence
    restart_evidence = _restart_evidence(model, probes, patch_probes, raw, maps, config)
    evidence = torch.maximum(tests.evidence, restart_evidence)
    if broken := non_finite_classes(evidence):
        raise DetectorInputError(_not_finite(f"the evidence of classes {broken}"))
    # the decision reads each class's lead over its strongest rivals (gray only; ``class_leads``)
    kind = input_kind(input_shape)
    leads = class_leads(evidence.tolist(), kind)
    class_probability = [backdoor_probability(lead, centre=LEAD_CENTRES[kind], slope=LEAD_SLOPE) for lead in leads]
    probability = max(class_probability)
    verdict = verdict_for(probability, suspicious_at=config.suspicious_at, backdoored_at=config.backdoored_at)
    ranked = sorted(range(len(maps)), key=lambda k: -float(evidence[k]))
    flagged = [k for k in ranked if class_probability[k] >= config.suspicious_at]
    suspected = flagged or ranked[:1] if verdict != "clean" else []
    hotspot = shared_hotspot(pixel_energy.cpu(), windows)
    classes = [
        ClassScore(
            class_index=k,
            score=float(evidence[k]),
            anomaly_index=float(anomaly[k]),
            success_rate=m.success_rate,
            stability=m.stability,
            features={
                "lead": leads[k],
                "mask_margin": float(tests.mask_margin[k]),
                "window_margin": float(tests.window_margin[k]),
                "map_margin": float(tests.map_margin[k]),
                "dominance": float(tests.dominance[k]),
                "concentration": float(concentration[k]),
                "transfer_rate": float(transfer[k]),
                "shared_hotspot": float(hotspot[k]),
                "final_probability": m.trace[-1] if m.trace else 0.0,
            }
            | ({"restart_evidence": float(restart_evidence[k])} if restart_evidence[k] > -math.inf else {}),
            trigger=triggers[k],
            suspected=k in suspected,
        )
        for k, m in enumerate(maps)
    ]
    return AuditScore(verdict=verdict, probability=probability, suspected_classes=suspected, classes=classes)


@dataclass
class _ClassTests:
    """The per-class margins of the patch and spread-trigger tests, and the evidence they make."""

    mask_margin: torch.Tensor
    window_margin: torch.Tensor
    map_margin: torch.Tensor
    dominance: torch.Tensor
    evidence: torch.Tensor


def _class_tests(
    model: nn.Module,
    probes: _Probes,
    patch_probes: _Probes,
    raw: torch.Tensor,
    config: ScoringConfig,
    classes: list[int],
) -> _ClassTests:
    """The mask, window and map tests of the maps ``raw`` (K, C, H, W) for ``classes``, and their evidence."""
    height, width = raw.shape[-2:]
    pixel_energy = energy(raw)
    map_margin, dominance = _whole_map_tests(model, probes, raw, classes)
    masks = _top_pixel_masks(pixel_energy, config.mask_fraction)
    mask_margin = _stamped_margins(model, patch_probes, raw, masks, classes)
    window_masks = _densest_window_masks(pixel_energy, masks, window_size(height, width, config.patch_window))
    window_margin = _stamped_margins(model, patch_probes, raw, window_masks, classes)
    # a patch is a few pixels in one place: its mask wins the probes, and so does the part of the mask
    # in one small window; a natural class's strongest pixels win them spread over the image
    patch = (1 - config.window_weight) * mask_margin + config.window_weight * window_margin
    # a trigger is either a patch or spread over the image (a blend, a sinusoid: the map margin); the
    # class's evidence is whichever hypothesis it wins best
    evidence = torch.maximum(patch, map_margin)
    return _ClassTests(mask_margin, window_margin, map_margin, dominance, evidence)


def _restart_evidence(
    model: nn.Module,
    probes: _Probes,
    patch_probes: _Probes,
    raw: torch.Tensor,
    maps: list[ClassMap],
    config: ScoringConfig,
) -> torch.Tensor:
    """For each class whose restarts disagree (their mean cosine, the map's stability, is under
    ``config.score_restarts_below``), the best evidence of its restarts' own maps; -inf elsewhere.

    The refine phase starts from the mean of the restarts that point the best one's way (``restart_merge``),
    and two restarts that found a trigger apart (a cosine above zero but well under one) average to a map
    that holds half of each: its evidence can fall under either restart's alone. Such a class keeps its
    best restart's evidence. The probes stay the merged maps' (``raw``, on the model's device).
    """
    best = torch.full((len(maps),), -math.inf)
    split = [k for k, m in enumerate(maps) if m.stability < config.score_restarts_below and len(m.restarts) > 1]
    if not split:
        return best
    for r in range(min(len(maps[k].restarts) for k in split)):
        restart_raw = raw.clone()
        for k in split:
            restart_raw[k] = maps[k].restarts[r].to(raw.device)
        tests = _class_tests(model, probes, patch_probes, restart_raw, config, split)
        best[split] = torch.maximum(best[split], tests.evidence[split])
    return best


def _trigger(class_map: torch.Tensor, window: Window, height: int, width: int) -> TriggerEstimate:
    mask = window.mask(height, width, class_map.device)
    return TriggerEstimate(bbox=window.bbox, mask=mask.cpu(), pattern=(trigger_pattern(class_map) * mask).cpu())
