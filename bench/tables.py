"""The benchmark's figures as Markdown tables, as ``bench.detection`` prints them."""

from __future__ import annotations

from typing import Any


def _number(value: float, digits: int = 2) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"


def _interval(bounds: tuple[float, float]) -> str:
    low, high = bounds
    return f" ({_number(low)}-{_number(high)})" if low == low else ""


def _time_cells(c: dict[str, Any]) -> str:
    ours, theirs = c["seconds"]
    return f"{c['median_time_ratio']:.2f} | {c['faster_on']} of {c['models']} | {ours:.0f} / {theirs:.0f} |"


def _markdown(header: str, lines: list[str]) -> str:
    return "\n".join([header, "|" + "---|" * (header.count("|") - 1), *lines])


def format_comparison(comparisons: list[dict[str, Any]]) -> str:
    """A Markdown table, one row per baseline and group."""
    header = (
        "| ours vs | group | models | AUROC difference (95% CI) | median time ratio | ours faster on "
        "| total s (ours / other) |"
    )
    return _markdown(
        header,
        [
            f"| {c['other']} | {c['group']} | {c['models']} | {c['auroc_difference']:+.2f} "
            f"({_number(c['interval'][0])} to {_number(c['interval'][1])}) | {_time_cells(c)}"
            for c in comparisons
        ],
    )


def format_times(comparisons: list[dict[str, Any]]) -> str:
    """A Markdown table, one row per baseline, part and architecture."""
    header = "| ours vs | part | architecture | models | median time ratio | ours faster on | total s (ours / other) |"
    return _markdown(
        header,
        [f"| {c['other']} | {c['part']} | {c['arch']} | {c['models']} | {_time_cells(c)}" for c in comparisons],
    )


def format_targets(results: list[dict[str, Any]]) -> str:
    """A Markdown table of ``bench.targets.check_targets``: one row per target, one column per group,
    each cell the value and its verdict."""
    groups = list(dict.fromkeys(r["group"] for r in results))
    cells: dict[str, dict[str, str]] = {}
    for r in results:
        verdict = {True: "met", False: "**missed**", None: "n/a"}[r["met"]]
        value = "" if r["value"] != r["value"] else f"{r['value']:.3f} "
        cells.setdefault(r["target"], {})[r["group"]] = value + verdict
    return _markdown(
        "| target | " + " | ".join(groups) + " |",
        [f"| {target} | " + " | ".join(row.get(g, "") for g in groups) + " |" for target, row in cells.items()],
    )


def format_table(summary: list[dict[str, Any]]) -> str:
    """A Markdown table, one row per detector and group; AUROC and CE to three decimals, since the
    targets (0.95, 0.98, 0.30) are judged on them."""
    header = "| detector | group | bd/clean | AUROC (95% CI) | TPR@5%FPR | clean FPR (95% CI) | detected |"
    header += " target top-1 | CE | median s |"
    return _markdown(
        header,
        [
            f"| {s['detector']} | {s['group']} | {s['backdoored']}/{s['clean']} | "
            f"{_number(s['auroc'], 3)}{_interval(s['auroc_interval'])} | {_number(s['tpr_at_5_fpr'])} | "
            f"{_number(s['clean_fpr'])}{_interval(s['clean_fpr_interval'])} | {_number(s['detected'])} | "
            f"{_number(s['target_top1'])} | {_number(s['cross_entropy'], 3)} | {s['median_seconds']:.1f} |"
            for s in summary
        ],
    )
