"""An audit's results: the report (JSON contract and printable HTML) and each class's images."""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse, HTMLResponse

from app.api.deps import AuditDep, StorageDep
from app.api.routes.audits import require_succeeded
from app.core.storage import REPORT_FILE, Storage
from app.models import Audit

router = APIRouter(prefix="/audits", tags=["audits"])

IMAGE_FIELDS = ("map_file", "heatmap_file", "trigger_file")


def load_report(audit: Audit, storage: Storage) -> dict[str, Any]:
    require_succeeded(audit)
    key = Storage.audit_key(audit.id, REPORT_FILE)
    if not storage.exists(key):
        raise HTTPException(
            status.HTTP_410_GONE,
            detail=f"the report of audit {audit.id} is missing from storage; run the audit again",
        )
    report: dict[str, Any] = json.loads(storage.path(key).read_text())
    return report


@router.get("/{audit_id}/report", response_model=dict[str, Any], responses={409: {"description": "Not finished"}})
def read_report(audit: AuditDep, storage: StorageDep) -> dict[str, Any]:
    """The report.json contract (the same document ``backdoor-audit scan`` writes)."""
    return load_report(audit, storage)


@router.get("/{audit_id}/report.html", response_class=HTMLResponse, responses={409: {"description": "Not finished"}})
def read_report_html(audit: AuditDep, storage: StorageDep) -> HTMLResponse:
    """A self-contained printable report with every image embedded."""
    from app.reports.html import render_report_html

    report = load_report(audit, storage)
    images: dict[str, bytes] = {}
    for entry in report.get("classes", []):
        for field in IMAGE_FIELDS:
            name = entry.get(field)
            if isinstance(name, str) and storage.exists(key := Storage.audit_key(audit.id, name)):
                images[name] = storage.path(key).read_bytes()
    return HTMLResponse(render_report_html(report, images))


@router.get(
    "/{audit_id}/classes/{class_index}/{image}.png",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}, 404: {"description": "No such class or image"}},
)
def read_class_image(
    audit: AuditDep, class_index: int, image: Literal["map", "heatmap", "trigger"], storage: StorageDep
) -> FileResponse:
    """A class's signed saliency map, its heatmap, or (for suspected classes) the estimated trigger crop."""
    report = load_report(audit, storage)
    entry = next((c for c in report.get("classes", []) if c.get("class_index") == class_index), None)
    name = entry.get(f"{image}_file") if entry else None
    if not isinstance(name, str) or not storage.exists(key := Storage.audit_key(audit.id, name)):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"audit {audit.id} has no {image} image for class {class_index}"
        )
    return FileResponse(storage.path(key), media_type="image/png")
