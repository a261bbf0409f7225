"""Prometheus metrics of the API process, served at ``/metrics``.

Counters are process-wide (one registry per process, as prometheus-client expects); the audit gauges
are read from the database at scrape time, so they are right whichever process changed the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from app.models import AuditStatus

HTTP_REQUESTS = Counter(
    "backdoor_audit_http_requests_total",
    "HTTP requests by route template and status",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram("backdoor_audit_http_request_seconds", "HTTP request latency", ["method", "route"])
CHECKPOINTS_UPLOADED = Counter("backdoor_audit_checkpoints_uploaded_total", "New checkpoints stored")
AUDITS_SUBMITTED = Counter("backdoor_audit_audits_submitted_total", "Audits accepted and enqueued")


class AuditStatusCollector(Collector):
    """``backdoor_audit_audits{status=...}``: audits per status, counted in the database at scrape time."""

    def __init__(self, count_by_status: Callable[[], dict[AuditStatus, int]]) -> None:
        self.count_by_status = count_by_status

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("backdoor_audit_audits", "Audits by status", labels=["status"])

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield self._family()  # lets the registry check names without a database query

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            counts = self.count_by_status()
        except SQLAlchemyError:  # an unreachable database shows in /readyz; /metrics still serves the rest
            return
        gauge = self._family()
        for status, count in counts.items():
            gauge.add_metric([status.value], count)
        yield gauge


_collector: AuditStatusCollector | None = None


def watch_audits(count_by_status: Callable[[], dict[AuditStatus, int]]) -> None:
    """Point the audit gauge at a database (the latest app built in this process wins)."""
    global _collector
    if _collector is None:
        _collector = AuditStatusCollector(count_by_status)
        REGISTRY.register(_collector)
    _collector.count_by_status = count_by_status
