"""PDF audit report, printed from the HTML report with WeasyPrint (the optional ``pdf`` extra).

The PDF is the HTML report laid out for paper, so both always say the same thing. WeasyPrint lacks CSS
grid auto-fill, so a small print stylesheet (marked important to beat the report's own) lays the class
cards out as inline blocks. Rendering never touches the network: the only resources a report holds are
data URIs, and the URL fetcher allows no other scheme.
"""

from __future__ import annotations

_PRINT_CSS = """
@page { size: A4; margin: 14mm; }
body { max-width: none !important; padding: 0 !important; font-size: 10pt !important; }
.grid { display: block !important; }
.card { display: inline-block !important; width: 23.5% !important; margin: 0 0.5% 6px 0 !important;
        vertical-align: top !important; }
.card .pair { display: block !important; }
.card figure { display: inline-block !important; width: 48% !important; }
.trigger { display: block !important; }
.trigger figure { display: inline-block !important; width: 30% !important; vertical-align: top !important;
                  margin-right: 2% !important; }
img.map, svg.map { width: 100% !important; height: auto !important; }
"""


class PdfUnavailableError(RuntimeError):
    """WeasyPrint (or its system libraries, pango) is not installed."""


def html_to_pdf(html: str) -> bytes:
    """Print a self-contained report page (``render_report_html`` output, or the server's report.html)."""
    try:
        from weasyprint import CSS, HTML
        from weasyprint.urls import URLFetcher
    except (ImportError, OSError) as exc:  # OSError: the wheel is there but libpango is not
        raise PdfUnavailableError(
            "PDF reports need WeasyPrint and its system libraries: pip install 'backdoor-audit[pdf]' "
            "(and pango, e.g. apt-get install libpango-1.0-0), or use the HTML report and print it"
        ) from exc
    document = HTML(string=html, url_fetcher=URLFetcher(allowed_protocols={"data"}))
    pdf: bytes = document.write_pdf(stylesheets=[CSS(string=_PRINT_CSS)])
    return pdf
