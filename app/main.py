"""The FastAPI application. ``uvicorn app.main:app`` serves it with settings from the environment."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from app import __version__, crud
from app.api.main import api_router
from app.api.routes import dashboard, health
from app.core.db import session_scope
from app.core.metrics import HTTP_REQUESTS, HTTP_SECONDS, watch_audits
from app.core.queue import AuditQueue
from app.core.settings import Settings, get_settings
from app.models import AuditStatus


def _route_template(request: Request) -> str:
    """The matched path template (``/api/v1/audits/{audit_id}``), so metrics labels stay few."""
    route = request.scope.get("route")  # set by the router once it matched
    return str(getattr(route, "path", "unmatched"))


async def _observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    started = time.perf_counter()
    response = await call_next(request)
    route = _route_template(request)
    HTTP_SECONDS.labels(request.method, route).observe(time.perf_counter() - started)
    HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
    return response


def create_app(settings: Settings | None = None, queue: AuditQueue | None = None) -> FastAPI:
    """Build the app for ``settings`` (default: from the environment); tests pass their own."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        settings.ensure_dirs()  # at start-up, not at import: importing the app touches no disk
        yield

    app = FastAPI(
        title="backdoor-audit",
        version=__version__,
        description="Data-free backdoor audits of image classifiers with input-agnostic saliency maps.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.queue = queue or AuditQueue(settings)

    def count_by_status() -> dict[AuditStatus, int]:
        with session_scope(settings.database_url_resolved) as session:
            return crud.count_audits_by_status(session=session)

    watch_audits(count_by_status)
    app.middleware("http")(_observe)
    app.include_router(health.router)
    app.include_router(api_router, prefix="/api/v1")
    app.include_router(dashboard.router)  # the server-rendered pages, outside /api/v1
    return app


app = create_app()
