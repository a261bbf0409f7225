"""Turn a report.json dict into what the report templates draw.

The HTML report and the dashboard show the same things (verdict, per-class grid, anomaly chart, trigger
estimates, evidence), so the arithmetic lives here once and the templates only lay it out. Images are
resolved through a callable, because the report embeds them as data URIs while the dashboard links them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

# file name from the report (e.g. "class_0003_map.png") -> an <img src> value, or None when unavailable
ImageSource = Callable[[str], str | None]

# a 1000-class model must not become a multi-megabyte page: at most this many classes get image cards
DEFAULT_GRID_LIMIT = 24

VERDICTS = ("clean", "suspicious", "backdoored")


@dataclass(frozen=True)
class ClassView:
    class_index: int
    label: str
    score: float | None
    anomaly_index: float | None
    success_rate: float | None
    stability: float | None
    suspected: bool
    features: dict[str, float]
    trigger_bbox: tuple[int, int, int, int] | None
    image_files: tuple[str | None, str | None, str | None]  # map, heatmap, trigger file names
    map_src: str | None = None  # filled by ``with_images`` only for classes that are drawn
    heatmap_src: str | None = None
    trigger_src: str | None = None


@dataclass(frozen=True)
class Bar:
    class_index: int
    label: str
    value: float
    x: float
    y: float
    width: float
    height: float
    suspected: bool


@dataclass(frozen=True)
class Chart:
    """Geometry of the per-class bar chart, in SVG user units (the SVG scales to its container)."""

    metric: str  # "anomaly_index" or "score"
    width: float
    height: float
    plot_left: float
    plot_bottom: float
    plot_top: float
    bars: list[Bar]
    max_value: float
    threshold: float | None
    threshold_y: float | None
    ticks: list[tuple[float, float]]  # (value, y)


@dataclass(frozen=True)
class SeedRun:
    """One saliency seed's run of a ``scan --seeds N`` report (report["seeds"])."""

    seed: int
    verdict: str
    probability: float | None
    median: bool  # the run this report is (its maps, scores and verdict)


@dataclass(frozen=True)
class ReportView:
    verdict: str
    probability: float | None
    model: dict[str, Any]
    input_height: int | None
    input_width: int | None
    num_classes: int
    classes: list[ClassView]  # every class, by class index (the dashboard pages through these)
    suspected: list[ClassView]  # ranked as in report["suspected_classes"]
    grid: list[ClassView]  # classes that get image cards
    rest: list[ClassView]  # classes summarised in the compact table only
    chart: Chart | None
    thresholds: dict[str, Any]
    config: dict[str, Any]
    seconds: float | None
    device: str | None
    created_at: str | None
    tool: dict[str, Any]
    feature_names: list[str] = field(default_factory=list)
    borderline: bool = False  # another saliency seed could turn the verdict (report["borderline"])
    seeds: list[SeedRun] = field(default_factory=list)  # the runs of a multi-seed scan; empty for one run


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _bbox(value: Any) -> tuple[int, int, int, int] | None:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 4:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return None
    x0, y0, x1, y1 = (int(v) for v in value)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def class_label(class_index: int, class_name: Any) -> str:
    """``3 · Dress`` when the model has class names, else ``class 3``."""
    if isinstance(class_name, str) and class_name:
        return f"{class_index} · {class_name}"
    return f"class {class_index}"


def _file_name(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def with_images(view: ClassView, source: ImageSource) -> ClassView:
    """Resolve a class's images. Done only for the classes a page draws, in priority order, because
    a source may be costly (base64 of every map of a 1000-class model) or budgeted."""
    map_file, heatmap_file, trigger_file = view.image_files
    return replace(
        view,
        map_src=source(map_file) if map_file else None,
        heatmap_src=source(heatmap_file) if heatmap_file else None,
        trigger_src=source(trigger_file) if trigger_file else None,
    )


def build_class_view(entry: Mapping[str, Any]) -> ClassView:
    class_index = int(entry.get("class_index", 0))
    features = entry.get("features") or {}
    return ClassView(
        class_index=class_index,
        label=class_label(class_index, entry.get("class_name")),
        score=_float_or_none(entry.get("score")),
        anomaly_index=_float_or_none(entry.get("anomaly_index")),
        success_rate=_float_or_none(entry.get("success_rate")),
        stability=_float_or_none(entry.get("stability")),
        suspected=bool(entry.get("suspected")),
        features={
            str(name): number for name, value in features.items() if (number := _float_or_none(value)) is not None
        },
        trigger_bbox=_bbox(entry.get("trigger_bbox")),
        image_files=(
            _file_name(entry.get("map_file")),
            _file_name(entry.get("heatmap_file")),
            _file_name(entry.get("trigger_file")),
        ),
    )


def build_seed_runs(report: Mapping[str, Any]) -> list[SeedRun]:
    """The runs of a ``scan --seeds N`` report in seed order, the median one (the run whose seed the
    report's config carries) marked; empty when the report has no ``seeds`` list."""
    entries = report.get("seeds")
    if not isinstance(entries, list):
        return []
    saliency = (report.get("config") or {}).get("saliency")
    median_seed = saliency.get("seed") if isinstance(saliency, Mapping) else None
    runs = []
    for entry in entries:
        seed = entry.get("seed") if isinstance(entry, Mapping) else None
        if not isinstance(seed, int) or isinstance(seed, bool):
            continue
        verdict = str(entry.get("verdict", "unknown"))
        runs.append(
            SeedRun(
                seed=seed,
                verdict=verdict if verdict in VERDICTS else "unknown",
                probability=_float_or_none(entry.get("probability")),
                median=seed == median_seed,
            )
        )
    return runs


def _rank_key(view: ClassView) -> tuple[float, int]:
    # highest score first; classes without a score go last, ties broken by index for a stable page
    return (-(view.score if view.score is not None else -math.inf), view.class_index)


def build_chart(classes: Sequence[ClassView], thresholds: Mapping[str, Any]) -> Chart | None:
    """Bars of the anomaly index per class (the score when no anomaly index is present) with the MAD
    rule's reference line drawn, so a reader sees how far the suspected class stands out. The verdict
    does not read this index: it reads the class leads (worker/scoring)."""
    if not classes:
        return None
    use_anomaly = any(c.anomaly_index is not None for c in classes)
    metric = "anomaly_index" if use_anomaly else "score"
    values = [(c.anomaly_index if use_anomaly else c.score) or 0.0 for c in classes]
    threshold = _float_or_none(thresholds.get("anomaly_index")) if use_anomaly else None

    width, height = 800.0, 240.0
    plot_left, plot_right, plot_top, plot_bottom = 48.0, 8.0, 10.0, 210.0
    top_value = max([*values, threshold or 0.0, 1e-9])
    max_value = _nice_ceiling(top_value)
    scale = (plot_bottom - plot_top) / max_value
    slot = (width - plot_left - plot_right) / len(classes)
    bar_width = max(slot * 0.8, 0.5)

    bars = []
    for position, (view, value) in enumerate(zip(classes, values, strict=True)):
        bar_height = max(value, 0.0) * scale
        bars.append(
            Bar(
                class_index=view.class_index,
                label=view.label,
                value=value,
                x=round(plot_left + position * slot + (slot - bar_width) / 2, 2),
                y=round(plot_bottom - bar_height, 2),
                width=round(bar_width, 2),
                height=round(bar_height, 2),
                suspected=view.suspected,
            )
        )
    ticks = [(max_value * i / 4, round(plot_bottom - max_value * i / 4 * scale, 2)) for i in range(5)]
    threshold_y = round(plot_bottom - threshold * scale, 2) if threshold is not None else None
    return Chart(
        metric=metric,
        width=width,
        height=height,
        plot_left=plot_left,
        plot_bottom=plot_bottom,
        plot_top=plot_top,
        bars=bars,
        max_value=max_value,
        threshold=threshold,
        threshold_y=threshold_y,
        ticks=ticks,
    )


def _nice_ceiling(value: float) -> float:
    """Round an axis maximum up to 1, 2 or 5 times a power of ten so tick labels stay readable."""
    exponent = math.floor(math.log10(value))
    for step in (1.0, 2.0, 5.0, 10.0):
        candidate = step * 10**exponent
        if candidate >= value:
            return candidate
    return 10.0 ** (exponent + 1)


def build_report_view(
    report: Mapping[str, Any], source: ImageSource, *, grid_limit: int = DEFAULT_GRID_LIMIT
) -> ReportView:
    """Select what to draw. Up to ``grid_limit`` classes get image cards: every suspected class, then the
    highest-scoring others; the remaining classes appear only in the compact table."""
    classes = sorted(
        (build_class_view(entry) for entry in report.get("classes") or []),
        key=lambda c: c.class_index,
    )
    known = {c.class_index for c in classes}
    # the ranked list decides the order; a class flagged only in its own entry still counts as suspected
    ranked_indices = [k for k in report.get("suspected_classes") or [] if isinstance(k, int) and k in known]
    ranked_indices = list(dict.fromkeys(ranked_indices))
    ranked_indices += [c.class_index for c in classes if c.suspected and c.class_index not in ranked_indices]
    suspect_indices = set(ranked_indices)
    classes = [replace(c, suspected=c.class_index in suspect_indices) for c in classes]
    by_index = {c.class_index: c for c in classes}
    ranked_suspects = [by_index[k] for k in ranked_indices]

    if len(classes) <= grid_limit:
        grid = classes
        rest: list[ClassView] = []
    else:
        others = sorted((c for c in classes if c.class_index not in suspect_indices), key=_rank_key)
        grid = ranked_suspects + others[: max(grid_limit - len(ranked_suspects), 0)]
        grid_indices = {c.class_index for c in grid}
        rest = [c for c in classes if c.class_index not in grid_indices]

    # images only for classes drawn with pictures, suspects first: a budgeted source spends on them first
    drawn: dict[int, ClassView] = {}
    for view in (*ranked_suspects, *grid):
        if view.class_index not in drawn:
            drawn[view.class_index] = with_images(view, source)
    classes = [drawn.get(c.class_index, c) for c in classes]
    ranked_suspects = [drawn[c.class_index] for c in ranked_suspects]
    grid = [drawn[c.class_index] for c in grid]

    model = dict(report.get("model") or {})
    shape = model.get("input_shape")
    height = width = None
    if isinstance(shape, Sequence) and len(shape) == 3 and all(isinstance(v, int) for v in shape):
        height, width = int(shape[1]), int(shape[2])
    feature_names = sorted({name for c in ranked_suspects or grid[:1] for name in c.features})
    verdict = str(report.get("verdict", "unknown"))
    thresholds = dict(report.get("thresholds") or {})
    return ReportView(
        verdict=verdict if verdict in VERDICTS else "unknown",
        probability=_float_or_none(report.get("probability")),
        model=model,
        input_height=height,
        input_width=width,
        num_classes=int(model.get("num_classes") or len(classes)),
        classes=classes,
        suspected=ranked_suspects,
        grid=grid,
        rest=rest,
        chart=build_chart(classes, thresholds),
        thresholds=thresholds,
        config=dict(report.get("config") or {}),
        seconds=_float_or_none(report.get("seconds")),
        device=report.get("device") if isinstance(report.get("device"), str) else None,
        created_at=report.get("created_at") if isinstance(report.get("created_at"), str) else None,
        tool=dict(report.get("tool") or {}),
        feature_names=feature_names,
        borderline=report.get("borderline") is True,
        seeds=build_seed_runs(report),
    )
