"""Liveness, readiness and metrics, outside ``/api/v1`` where orchestrators and Prometheus expect them."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import text

from app.api.deps import QueueDep, SettingsDep
from app.core.db import session_scope
from app.schemas import HealthPublic

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthPublic)
def healthz() -> HealthPublic:
    """The process is up (no dependencies checked)."""
    return HealthPublic(status="ok")


@router.get("/readyz", response_model=HealthPublic, responses={503: {"model": HealthPublic}})
def readyz(settings: SettingsDep, queue: QueueDep) -> HealthPublic | JSONResponse:
    """The database and the broker answer; 503 names the one that does not."""
    checks: dict[str, str] = {}
    try:
        with session_scope(settings.database_url_resolved) as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready; its text is the diagnosis
        checks["database"] = f"error: {exc.__class__.__name__}: {exc}"
    try:
        queue.ping_broker()
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"error: {exc.__class__.__name__}: {exc}"
    body = HealthPublic(status="ok" if all(v == "ok" for v in checks.values()) else "unavailable", checks=checks)
    if body.status != "ok":
        return JSONResponse(body.model_dump(), status_code=503)
    return body


@router.get("/metrics", response_class=Response)
def metrics() -> Response:
    """Prometheus exposition format."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
