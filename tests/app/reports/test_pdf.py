from __future__ import annotations

import sys

import pytest

from app.reports.pdf import PdfUnavailableError, render_report_pdf
from tests.app.reports.conftest import make_report


def test_pdf_report_renders_pages() -> None:
    pytest.importorskip("weasyprint")
    report, images = make_report(suspected=(3,))
    pdf = render_report_pdf(report, images)
    assert pdf.startswith(b"%PDF-")
    assert pdf.rstrip().endswith(b"%%EOF")
    assert 5_000 < len(pdf) < 2_000_000


def test_missing_weasyprint_gives_an_actionable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # makes `import weasyprint` raise ImportError
    with pytest.raises(PdfUnavailableError, match=r"pip install 'backdoor-audit\[pdf\]'"):
        render_report_pdf(*make_report())
