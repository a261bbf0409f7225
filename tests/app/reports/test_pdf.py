from __future__ import annotations

import sys

import pytest

from app.reports.html import render_report_html
from app.reports.pdf import PdfUnavailableError, html_to_pdf
from tests.app.reports.conftest import make_report


def test_pdf_report_renders_pages() -> None:
    pytest.importorskip("weasyprint")
    report, images = make_report(suspected=(3,))
    pdf = html_to_pdf(render_report_html(report, images))
    assert pdf.startswith(b"%PDF-")
    assert pdf.rstrip().endswith(b"%%EOF")
    assert 5_000 < len(pdf) < 2_000_000


def test_missing_weasyprint_gives_an_actionable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # makes `import weasyprint` raise ImportError
    with pytest.raises(PdfUnavailableError, match=r"pip install 'backdoor-audit\[pdf\]'"):
        html_to_pdf(render_report_html(*make_report()))
