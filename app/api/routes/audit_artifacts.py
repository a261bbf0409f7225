"""An audit's results: the report (JSON contract and printable HTML) and each class's images."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse, HTMLResponse

from app.api.deps import AuditDep, StorageDep
from app.api.routes.audits import require_succeeded
from app.core.storage import REPORT_FILE, Storage
from app.models import Audit

router = APIRouter(prefix="/audits", tags=["audits"])

IMAGE_KINDS = ("map", "heatmap", "trigger")  # report.json names a class's images in ``<kind>_file``
IMAGE_INDEX_CACHE_SIZE = 32  # audits whose image file names are kept; each is a few dozen bytes a class


def _report_path(audit: Audit, storage: Storage) -> Path:
    require_succeeded(audit)
    key = Storage.audit_key(audit.id, REPORT_FILE)
    if not storage.exists(key):
        raise HTTPException(
            status.HTTP_410_GONE,
            detail=f"the report of audit {audit.id} is missing from storage; run the audit again",
        )
    return storage.path(key)


def load_report(audit: Audit, storage: Storage) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(_report_path(audit, storage).read_text())
    return report


def image_names(report: Mapping[str, Any]) -> dict[int, dict[str, str]]:
    """class index -> image kind -> file name, for the images the report names (a class's first entry)."""
    index: dict[int, dict[str, str]] = {}
    for entry in report.get("classes") or []:
        if isinstance(class_index := entry.get("class_index"), int):
            kinds = {kind: name for kind in IMAGE_KINDS if isinstance(name := entry.get(f"{kind}_file"), str) and name}
            index.setdefault(class_index, kinds)
    return index


@lru_cache(maxsize=IMAGE_INDEX_CACHE_SIZE)
def _cached_image_names(path: Path, mtime_ns: int, size: int, inode: int) -> dict[int, dict[str, str]]:
    # keyed by the file's identity as well as its path: a rewritten report is parsed afresh
    return image_names(json.loads(path.read_text()))


def class_image_names(audit: Audit, storage: Storage) -> Mapping[int, Mapping[str, str]]:
    """The report's image file names by class. A page of a large audit asks for a hundred images at once,
    and report.json (a 1000-class model's is about a megabyte) is parsed once for all of them, not per image.
    Callers must not modify the result: it is shared between requests."""
    path = _report_path(audit, storage)
    stat = path.stat()
    return _cached_image_names(path, stat.st_mtime_ns, stat.st_size, stat.st_ino)


class StoredImages(Mapping[str, bytes]):
    """An audit's images by file name, read from storage only when asked for.

    The renderer embeds at most a grid's worth of classes within a byte budget, so reading every class's
    images up front (three a class, a 1000-class model) held hundreds of files in memory to use two dozen.
    Only names the report lists are served, and a missing file reads as absent.
    """

    def __init__(self, storage: Storage, audit_id: uuid.UUID, names: Iterable[str]) -> None:
        self._storage = storage
        self._audit_id = audit_id
        self._names = frozenset(names)

    def _key(self, name: str) -> str | None:
        if name not in self._names:
            return None
        try:
            return Storage.audit_key(self._audit_id, name)
        except ValueError:  # not a plain file name: never a path into storage
            return None

    def __getitem__(self, name: str) -> bytes:
        key = self._key(name)
        if key is None:
            raise KeyError(name)
        try:
            return self._storage.path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise KeyError(name) from None

    def __contains__(self, name: object) -> bool:  # without reading the file, unlike Mapping's
        key = self._key(name) if isinstance(name, str) else None
        return key is not None and self._storage.exists(key)

    def __iter__(self) -> Iterator[str]:
        return (name for name in sorted(self._names) if name in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


@router.get("/{audit_id}/report", response_model=dict[str, Any], responses={409: {"description": "Not finished"}})
def read_report(audit: AuditDep, storage: StorageDep) -> dict[str, Any]:
    """The report.json contract (the same document ``backdoor-audit scan`` writes)."""
    return load_report(audit, storage)


@router.get("/{audit_id}/report.html", response_class=HTMLResponse, responses={409: {"description": "Not finished"}})
def read_report_html(audit: AuditDep, storage: StorageDep) -> HTMLResponse:
    """A self-contained printable report with the images of the classes it draws embedded."""
    from app.reports.html import render_report_html

    report = load_report(audit, storage)
    names = (name for kinds in image_names(report).values() for name in kinds.values())
    return HTMLResponse(render_report_html(report, StoredImages(storage, audit.id, names)))


@router.get(
    "/{audit_id}/classes/{class_index}/{image}.png",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}, 404: {"description": "No such class or image"}},
)
def read_class_image(
    audit: AuditDep, class_index: int, image: Literal["map", "heatmap", "trigger"], storage: StorageDep
) -> FileResponse:
    """A class's signed saliency map, its heatmap, or (for suspected classes) the estimated trigger crop."""
    name = class_image_names(audit, storage).get(class_index, {}).get(image)
    images = StoredImages(storage, audit.id, [name] if name else [])
    if name is None or name not in images:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"audit {audit.id} has no {image} image for class {class_index}"
        )
    return FileResponse(storage.path(Storage.audit_key(audit.id, name)), media_type="image/png")
