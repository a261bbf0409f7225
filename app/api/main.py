"""All resource routers of the versioned API, gathered in one place."""

from fastapi import APIRouter

from app.api.routes import audit_artifacts, audits, checkpoints

api_router = APIRouter()
api_router.include_router(checkpoints.router)
api_router.include_router(audits.router)
api_router.include_router(audit_artifacts.router)
