"""The dashboard: server-rendered pages for people, outside ``/api/v1``.

Sign-in stores the team's API key in a Secure, HttpOnly, SameSite=Strict cookie (a page script cannot
read it, and no other site can make the browser send it, which is also the CSRF defence for the forms).
Every lookup, upload and audit goes through the same crud functions and route handlers as the REST API,
called as plain functions, so the dashboard cannot drift from the API's rules (team scoping, size
limits, intake checks, config validation).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from pydantic import BeforeValidator
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app import crud
from app.api.deps import (
    QueueDep,
    SessionDep,
    SettingsDep,
    StorageDep,
    owned_audit,
    owned_checkpoint,
    team_for_api_key,
)
from app.api.routes import audit_artifacts, audits, checkpoints
from app.core.queue import AuditQueue
from app.models import Audit, AuditStatus, Checkpoint, Team, Verdict
from app.reports.pdf import PdfUnavailableError, html_to_pdf
from app.reports.sarif import report_to_sarif
from app.reports.templating import template_env
from app.reports.view import build_report_view
from app.schemas import AuditCreate, AuditPublic, ClientJsonError, parse_client_json


class PageRoute(APIRoute):
    """Errors of page routes as an HTML page a person can act on, not the API's JSON body: HTTPExceptions
    and invalid parameters (``?page=0``, a malformed id, a form field left out) alike. Redirects (the
    sign-in one is an HTTPException with a 303) pass through unchanged."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                if request.method == "POST":
                    _require_same_origin(request)
                return await handler(request)
            except HTTPException as exc:
                if 300 <= exc.status_code < 400:
                    raise
                status_code, message = exc.status_code, _detail_text(exc.detail)
            except RequestValidationError as exc:
                status_code, message = status.HTTP_422_UNPROCESSABLE_CONTENT, _validation_text(exc)
            return _page(
                "error.html",
                status_code=status_code,
                status=status_code,
                message=message,
                signed_in=COOKIE in request.cookies,
            )

        return handle


router = APIRouter(include_in_schema=False, route_class=PageRoute)


def _require_same_origin(request: Request) -> None:
    """Refuse form posts sent by other sites. The SameSite=Strict cookie already keeps them signed out;
    this also stops a foreign page from signing a browser in with the attacker's key (login CSRF).
    Hosts are compared, not schemes, so a TLS-terminating proxy in front does not break the forms."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="form posts are accepted from this site only")


COOKIE = "backdoor_audit_key"
COOKIE_MAX_AGE_S = 8 * 3600
AUDITS_PER_PAGE = 25
CLASSES_PER_PAGE = 48
MAX_CONFIG_CHARS = 10_000
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


def _page(template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = template_env().get_template(f"dashboard/{template}").render(**context)
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


def _safe_next(path: str | None) -> str:
    # only same-site paths: "//evil.example" or "https://..." would make the login an open redirect
    if path and path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return "/"


def get_page_team(request: Request, session: SessionDep) -> Team:
    team = team_for_api_key(session, request.cookies.get(COOKIE))
    if team is None:
        # an HTTPException carrying a redirect: browsers follow the Location of any 303
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(
            status.HTTP_303_SEE_OTHER,
            detail="sign in with an API key",
            headers={"Location": f"/login?next={quote(target, safe='')}"},
        )
    return team


PageTeamDep = Annotated[Team, Depends(get_page_team)]


def get_page_audit(audit_id: uuid.UUID, session: SessionDep, team: PageTeamDep) -> Audit:
    return owned_audit(session, team, audit_id)


PageAuditDep = Annotated[Audit, Depends(get_page_audit)]


def get_page_checkpoint(checkpoint_id: uuid.UUID, session: SessionDep, team: PageTeamDep) -> Checkpoint:
    return owned_checkpoint(session, team, checkpoint_id)


PageCheckpointDep = Annotated[Checkpoint, Depends(get_page_checkpoint)]


# --- sign-in -----------------------------------------------------------------------------------------


def _insecure_transport(request: Request) -> bool:
    """Browsers drop Secure cookies over plain HTTP except on loopback; warn instead of looping."""
    return request.url.scheme != "https" and (request.url.hostname or "") not in LOOPBACK_HOSTS


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return _page("login.html", next=_safe_next(next), error=None, insecure=_insecure_transport(request))


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    session: SessionDep,
    api_key: Annotated[str, Form(max_length=200)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    team = team_for_api_key(session, api_key.strip())
    if team is None:
        return _page(
            "login.html",
            status_code=status.HTTP_401_UNAUTHORIZED,
            next=_safe_next(next),
            error="That API key is not known to this server. Ask an admin for one "
            "('backdoor-audit keys create --team NAME').",
            insecure=_insecure_transport(request),
        )
    response = RedirectResponse(_safe_next(next), status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        COOKIE, api_key.strip(), max_age=COOKIE_MAX_AGE_S, httponly=True, secure=True, samesite="strict"
    )
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE, httponly=True, secure=True, samesite="strict")
    return response


# --- audits ------------------------------------------------------------------------------------------

# a filter's select left at "any" sends an empty value: no filter, not a 422
AnyValue = BeforeValidator(lambda value: value or None)


@router.get("/", response_class=HTMLResponse)
def audits_page(
    session: SessionDep,
    team: PageTeamDep,
    status_filter: Annotated[AuditStatus | None, AnyValue, Query(alias="status")] = None,
    verdict: Annotated[Verdict | None, AnyValue] = None,
    borderline: Annotated[bool | None, AnyValue] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    rows, count = crud.list_audits(
        session=session,
        team_id=team.id,
        status=status_filter,
        verdict=verdict,
        borderline=borderline,
        skip=(page - 1) * AUDITS_PER_PAGE,
        limit=AUDITS_PER_PAGE,
    )
    filters = {k: v.value for k, v in (("status", status_filter), ("verdict", verdict)) if v is not None}
    if borderline is not None:
        filters["borderline"] = "true" if borderline else "false"
    return _page(
        "audits.html",
        team=team,
        audits=[AuditPublic.from_audit(row) for row in rows],
        count=count,
        page=page,
        pages=max(1, math.ceil(count / AUDITS_PER_PAGE)),
        filters=filters,
        query=lambda **changes: "?" + urlencode({**filters, **changes}),
        statuses=[s.value for s in AuditStatus],
        verdicts=[v.value for v in Verdict],
    )


@router.get("/audits/{audit_id}", response_class=HTMLResponse)
def audit_page(
    audit: PageAuditDep,
    team: PageTeamDep,
    storage: StorageDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    public = AuditPublic.from_audit(audit)
    if audit.status != AuditStatus.succeeded:
        return _page("audit_running.html", team=team, audit=public)
    report = audit_artifacts.load_report(audit, storage)
    urls = _image_urls(audit.id, report)
    # every class may be drawn (the grid is paged here), and image URLs cost nothing to resolve
    view = build_report_view(report, urls.get, grid_limit=len(report.get("classes") or []))
    pages = max(1, math.ceil(len(view.classes) / CLASSES_PER_PAGE))
    page = min(page, pages)
    return _page(
        "audit.html",
        team=team,
        audit=public,
        view=view,
        page=page,
        pages=pages,
        page_classes=view.classes[(page - 1) * CLASSES_PER_PAGE : page * CLASSES_PER_PAGE],
    )


def _image_urls(audit_id: uuid.UUID, report: dict[str, Any]) -> dict[str, str]:
    """The report's image file names -> this dashboard's URLs for them (served by ``class_image``)."""
    return {
        name: f"/audits/{audit_id}/classes/{class_index}/{kind}.png"
        for class_index, kinds in audit_artifacts.image_names(report).items()
        for kind, name in kinds.items()
    }


@router.get("/audits/{audit_id}/progress")
def audit_progress(request: Request, session: SessionDep, audit_id: uuid.UUID) -> JSONResponse:
    """The small JSON the running-audit page polls. Answers 401 (not a redirect) so a script can tell."""
    team = team_for_api_key(session, request.cookies.get(COOKIE))
    if team is None:
        return JSONResponse({"detail": "signed out"}, status_code=status.HTTP_401_UNAUTHORIZED)
    audit = crud.get_audit(session=session, team_id=team.id, audit_id=audit_id)
    if audit is None:
        return JSONResponse({"detail": f"audit {audit_id} not found"}, status_code=status.HTTP_404_NOT_FOUND)
    return JSONResponse(AuditPublic.from_audit(audit).model_dump(mode="json"), headers={"Cache-Control": "no-store"})


@router.get("/audits/{audit_id}/classes/{class_index}/{image}.png", response_class=FileResponse)
def class_image(
    audit: PageAuditDep, class_index: int, image: Literal["map", "heatmap", "trigger"], storage: StorageDep
) -> FileResponse:
    return audit_artifacts.read_class_image(audit, class_index, image, storage)


@router.get("/audits/{audit_id}/report.{fmt}")
def download_report(audit: PageAuditDep, fmt: Literal["html", "json", "sarif", "pdf"], storage: StorageDep) -> Response:
    """The report as a file to keep: printable HTML, PDF, the report.json contract, or SARIF 2.1.0."""
    filename = f"backdoor-audit-{audit.id}.{fmt}"
    disposition = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if fmt in ("html", "pdf"):
        response = audit_artifacts.read_report_html(audit, storage)
        if fmt == "html":
            response.headers.update(disposition)
            return response
        try:
            pdf = html_to_pdf(bytes(response.body).decode("utf-8"))
        except PdfUnavailableError as exc:
            raise HTTPException(status.HTTP_501_NOT_IMPLEMENTED, detail=str(exc)) from exc
        return Response(pdf, media_type="application/pdf", headers=disposition)
    report = audit_artifacts.load_report(audit, storage)
    document = report_to_sarif(report) if fmt == "sarif" else report
    return Response(json.dumps(document, indent=2), media_type="application/json", headers=disposition)


# --- checkpoints and uploads -------------------------------------------------------------------------


@router.get("/checkpoints/{checkpoint_id}", response_class=HTMLResponse)
def checkpoint_page(checkpoint: PageCheckpointDep, team: PageTeamDep) -> HTMLResponse:
    return _page("checkpoint.html", team=team, checkpoint=checkpoint, error=None, config_text="")


@router.post("/checkpoints/{checkpoint_id}/audits", response_class=HTMLResponse)
def start_audit(
    request: Request,
    checkpoint: PageCheckpointDep,
    team: PageTeamDep,
    session: SessionDep,
    queue: QueueDep,
    config: Annotated[str, Form(max_length=MAX_CONFIG_CHARS)] = "",
) -> Response:
    try:
        audit = _create_audit(request, session, team, queue, checkpoint.id, config)
    except HTTPException as exc:
        return _page(
            "checkpoint.html",
            status_code=exc.status_code,
            team=team,
            checkpoint=checkpoint,
            error=_detail_text(exc.detail),
            config_text=config,
        )
    return RedirectResponse(f"/audits/{audit.id}", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/upload", response_class=HTMLResponse)
def upload_page(team: PageTeamDep) -> HTMLResponse:
    return _page("upload.html", team=team, error=None)


@router.post("/upload", response_class=HTMLResponse)
async def upload(
    request: Request,
    session: SessionDep,
    team: PageTeamDep,
    settings: SettingsDep,
    storage: StorageDep,
    queue: QueueDep,
    config: Annotated[str, Query(max_length=MAX_CONFIG_CHARS)] = "",
) -> Response:
    """Upload a checkpoint through the API's own streaming handler, then start an audit of it.

    The audit config travels in the query string (the page's script puts it there): the multipart body
    is the API's checkpoint form, which refuses fields it does not know.
    """
    try:
        checkpoint = await checkpoints.upload_checkpoint(request, Response(), session, team, settings, storage, queue)
        audit = await run_in_threadpool(_create_audit, request, session, team, queue, checkpoint.id, config)
    except HTTPException as exc:
        return _page("upload.html", status_code=exc.status_code, team=team, error=_detail_text(exc.detail))
    return RedirectResponse(f"/audits/{audit.id}", status_code=status.HTTP_303_SEE_OTHER)


def _create_audit(
    request: Request, session: Session, team: Team, queue: AuditQueue, checkpoint_id: uuid.UUID, config_text: str
) -> AuditPublic:
    try:
        config = parse_client_json(config_text) if config_text.strip() else {}
    except ClientJsonError as exc:
        raise HTTPException(422, detail=f"invalid audit config: {exc}") from exc
    if not isinstance(config, dict):
        raise HTTPException(422, detail='the audit config must be a JSON object, e.g. {"saliency": {"iterations": 60}}')
    body = AuditCreate(checkpoint_id=checkpoint_id, config=config)
    return audits.create_audit(body, request, Response(), session, team, queue)


def _detail_text(detail: Any) -> str:
    """An HTTPException detail (text or pydantic's error list) as one sentence for a page."""
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', []))}: {item.get('msg')}"
            if isinstance(item, dict)
            else str(item)
            for item in detail
        )
    return str(detail)


def _validation_text(exc: RequestValidationError) -> str:
    """Invalid request parameters as one sentence, e.g. "page: Input should be greater than or equal to 1"."""
    parts = []
    for error in exc.errors():
        # the first element says where the parameter came from (query, path, body); the name is enough
        loc = [str(p) for p in error.get("loc", ())][1:]
        parts.append(f"{'.'.join(loc) or 'request'}: {error.get('msg')}")
    return "; ".join(parts) + " (check the address or the form and try again)"
