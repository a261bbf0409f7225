"""Self-contained, printable HTML audit report.

Security teams archive and forward this file, often to machines without access to our server, so it
must open with no network: images are embedded as data URIs, CSS is inline, the chart is inline SVG,
and no script is needed.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from app.reports.templating import template_env
from app.reports.view import DEFAULT_GRID_LIMIT, build_report_view

# raw image bytes embedded per report (base64 adds a third): suspected classes' images are embedded first
DEFAULT_IMAGE_BUDGET_BYTES = 3 * 1024 * 1024

_IMAGE_TYPES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


def image_data_uri(data: bytes) -> str | None:
    """A data URI for PNG or JPEG bytes; None for anything else, so a stray file never becomes markup."""
    for magic, mime in _IMAGE_TYPES.items():
        if data.startswith(magic):
            return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return None


def render_report_html(
    report: Mapping[str, Any],
    images: Mapping[str, bytes],
    *,
    grid_limit: int = DEFAULT_GRID_LIMIT,
    image_budget_bytes: int = DEFAULT_IMAGE_BUDGET_BYTES,
) -> str:
    """Render ``report`` (the report.json contract) with its images (``{file_name: png_bytes}``).

    At most ``grid_limit`` classes get image cards (suspected ones first), and embedded images stop at
    ``image_budget_bytes`` (large inputs make large maps), so a 1000-class model of any input size stays
    a page of at most a few MB; every class still appears in the chart and the tables.
    """
    spent = 0
    omitted = 0

    def embed(file_name: str) -> str | None:
        nonlocal spent, omitted
        data = images.get(file_name)
        if not data:
            return None
        if spent + len(data) > image_budget_bytes:
            omitted += 1
            return None
        uri = image_data_uri(data)
        spent += len(data) if uri else 0
        return uri

    view = build_report_view(report, embed, grid_limit=grid_limit)
    return template_env().get_template("report/report.html").render(view=view, images_omitted=omitted)
