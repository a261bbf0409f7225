from __future__ import annotations

import re
from html.parser import HTMLParser

from app.reports.html import image_data_uri, render_report_html
from tests.app.reports.conftest import ReportFactory, make_report, tiny_png


class _Collector(HTMLParser):
    """Collects element start tags with their attributes, to assert on structure rather than on text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(html: str, name: str) -> list[dict[str, str | None]]:
    parser = _Collector()
    parser.feed(html)
    return [attrs for tag, attrs in parser.tags if tag == name]


def test_suspected_class_card_is_highlighted_and_clean_ones_are_not(report_factory: ReportFactory) -> None:
    report, images = report_factory(suspected=(3,))
    html = render_report_html(report, images)
    cards = {a["data-class-index"]: a for a in _tags(html, "div") if "card" in (a.get("class") or "").split()}
    assert set(cards) == {str(k) for k in range(10)}
    assert "suspected" in (cards["3"]["class"] or "").split()
    assert all("suspected" not in (a["class"] or "").split() for k, a in cards.items() if k != "3")
    assert 'data-verdict="backdoored"' in html
    assert "93.0%" in html


def test_trigger_bbox_is_drawn_over_the_map_in_image_coordinates(report_factory: ReportFactory) -> None:
    report, images = report_factory(suspected=(3,))
    html = render_report_html(report, images)
    rects = [a for a in _tags(html, "rect") if a.get("class") == "bbox"]
    assert len(rects) == 1
    assert (rects[0]["x"], rects[0]["y"], rects[0]["width"], rects[0]["height"]) == ("20", "21", "5", "5")
    svg_images = _tags(html, "image")
    assert svg_images and (svg_images[0]["href"] or "").startswith("data:image/png;base64,")
    assert 'id="trigger-3"' in html


def test_report_is_self_contained(report_factory: ReportFactory) -> None:
    report, images = report_factory()
    html = render_report_html(report, images)
    assert not re.search(r"https?://", html)
    assert "<script" not in html
    assert "<link" not in html
    sources = [a["src"] or "" for a in _tags(html, "img")]
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)


def test_anomaly_chart_has_one_bar_per_class_and_the_threshold_line(report_factory: ReportFactory) -> None:
    report, images = report_factory(num_classes=10, suspected=(3,))
    html = render_report_html(report, images)
    bars = [a for a in _tags(html, "rect") if "bar" in (a.get("class") or "").split()]
    assert len(bars) == 10
    suspected_bars = [a["data-class-index"] for a in bars if "suspected" in (a["class"] or "")]
    assert suspected_bars == ["3"]
    assert _tags(html, "line") and any(a.get("class") == "threshold" for a in _tags(html, "line"))
    # the suspected bar (anomaly 4.5) must be taller than a clean one
    heights = {a["data-class-index"]: float(a["height"] or 0) for a in bars}
    assert heights["3"] > 3 * max(h for k, h in heights.items() if k != "3")


def test_user_strings_are_escaped() -> None:
    names = [f"c{k}" for k in range(10)]
    names[2] = "<script>alert(1)</script>"
    report, images = make_report(class_names=names)
    html = render_report_html(report, images)
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_thousand_classes_stay_small_with_suspects_in_the_grid() -> None:
    report, images = make_report(num_classes=1000, suspected=(3, 977))
    html = render_report_html(report, images)
    assert len(html.encode()) < 1_000_000
    cards = [a for a in _tags(html, "div") if "card" in (a.get("class") or "").split()]
    assert 10 <= len(cards) <= 30
    assert {"3", "977"} <= {a["data-class-index"] for a in cards}
    # every class is still accounted for: the rest appear in the compact table
    rows = re.findall(r"<tr class=\"[a-z]*\"><td>class (\d+)</td>", html)
    assert len(set(rows) | {a["data-class-index"] for a in cards}) == 1000


def test_a_borderline_verdict_says_so_in_the_banner() -> None:
    report, images = make_report(verdict="suspicious", probability=0.87)
    assert 'class="borderline"' not in render_report_html(report, images)  # older reports have no field
    html = render_report_html({**report, "borderline": True}, images)
    assert 'class="borderline"' in html and "another saliency seed could turn this verdict" in html


def test_a_multi_seed_report_lists_its_runs_by_the_banner() -> None:
    report, images = make_report(verdict="suspicious", probability=0.87)
    assert 'id="seeds"' not in render_report_html(report, images)  # one seed: no line
    runs = [
        {"seed": 4, "verdict": "clean", "probability": 0.5},
        {"seed": 5, "verdict": "suspicious", "probability": 0.87},
        {"seed": 6, "verdict": "<b>bad</b>", "probability": 0.9},  # a hand-edited report cannot inject markup
    ]
    config = {**report["config"], "saliency": {"seed": 5}}
    html = render_report_html({**report, "config": config, "borderline": True, "seeds": runs}, images)
    assert "Median of 3 saliency seeds" in html and html.index('id="verdict"') < html.index('id="seeds"')
    spans = {a["data-seed"]: a["class"] for a in _tags(html, "span") if "seed-run" in (a.get("class") or "")}
    assert spans == {"4": "seed-run", "5": "seed-run median", "6": "seed-run"}
    assert "seed 4 → clean (50.0%)" in html and "seed 5 → suspicious (87.0%)</strong> (this report)" in html
    assert "<b>bad</b>" not in html and "seed 6 → unknown (90.0%)" in html
    # the seeds were run, so the banner says they split rather than suggesting a rescan
    assert "the saliency seeds disagree" in html and "rescan with two other seeds" not in html


def test_missing_images_and_clean_verdict_render_placeholders() -> None:
    report, _ = make_report(suspected=(), verdict="clean", probability=0.05)
    html = render_report_html(report, {})
    assert 'data-verdict="clean"' in html
    assert "no suspected target class" in html
    assert "Trigger estimates" not in html
    assert html.count('class="missing"') == 20


def test_image_data_uri_rejects_non_images() -> None:
    assert image_data_uri(b"<svg onload=alert(1)>") is None
    assert (image_data_uri(tiny_png(1)) or "").startswith("data:image/png;base64,")


def test_image_budget_keeps_the_suspects_images_first() -> None:
    report, images = make_report(num_classes=30, suspected=(17,))
    budget = 3 * len(images["class_0017_map.png"])  # room for the suspect's map, heatmap and trigger only
    html = render_report_html(report, images, image_budget_bytes=budget)
    assert "left out to keep this file" in html
    cards = {a["data-class-index"]: a for a in _tags(html, "div") if "card" in (a.get("class") or "").split()}
    assert next(iter(cards)) == "17"  # the suspect's card comes first
    embedded = [a["src"] for a in _tags(html, "img") if (a.get("src") or "").startswith("data:")]
    # the trigger crop and the suspect's map/heatmap are there, the other classes' images are not
    assert 2 <= len(embedded) <= 3
    assert 'alt="saliency map of class 17"' in html
