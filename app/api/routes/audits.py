"""Audits: submit (202, runs on the workers), read status and progress, list with filters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from sqlalchemy.exc import IntegrityError

from app import crud
from app.api.deps import AuditDep, QueueDep, SessionDep, TeamDep, owned_checkpoint
from app.core.metrics import AUDITS_SUBMITTED
from app.models import Audit, AuditStatus, Verdict
from app.schemas import MAX_PAGE_SIZE, AuditCreate, AuditPublic, AuditsPublic, check_client_json

router = APIRouter(prefix="/audits", tags=["audits"])


def normalised_config(config: dict[str, Any]) -> dict[str, Any]:
    """The full audit config with defaults filled in, or 422 naming the bad key or value.

    ``worker.config`` is torch-free and imported here, not at module import, to keep the API's
    import graph free of the worker package.
    """
    from worker.config import AuditConfig

    try:
        check_client_json(config)  # before the worker's checks: those name keys, this one nesting and NaN/Infinity
        return AuditConfig.from_dict(config).to_dict()
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"invalid audit config: {exc}") from exc


@router.post(
    "",
    response_model=AuditPublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        404: {"description": "No such checkpoint for this team"},
        422: {"description": "Invalid config"},
        503: {"description": "The job queue is unreachable; the audit was recorded as failed"},
    },
)
def create_audit(
    body: AuditCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    team: TeamDep,
    queue: QueueDep,
) -> AuditPublic:
    """Queue an audit of a checkpoint; poll ``Location`` until ``status`` is succeeded or failed."""
    checkpoint = owned_checkpoint(session, team, body.checkpoint_id)
    config = normalised_config(body.config)
    try:
        audit = crud.create_audit(session=session, team_id=team.id, checkpoint=checkpoint, config=config)
        session.commit()  # before enqueueing: a fast worker must find the row
    except IntegrityError as exc:  # the checkpoint was deleted since it was read: its foreign key is gone
        session.rollback()
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"checkpoint {body.checkpoint_id} not found") from exc
    try:
        queue.enqueue_audit(audit.id)
    except Exception as exc:  # any broker failure: the audit cannot run, say so on the row and to the caller
        crud.fail_audit(session=session, audit_id=audit.id, error=f"could not enqueue the audit: {exc}")
        session.commit()
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="the job queue (broker) is unreachable; check BROKER_URL and /readyz, then submit again",
        ) from exc
    AUDITS_SUBMITTED.inc()
    response.headers["Location"] = str(request.url_for("read_audit", audit_id=audit.id).path)
    return AuditPublic.from_audit(audit)


@router.get("/{audit_id}", response_model=AuditPublic)
def read_audit(audit: AuditDep) -> AuditPublic:
    """Status, per-class progress and, once succeeded, the verdict. Reads only the database."""
    return AuditPublic.from_audit(audit)


@router.get("", response_model=AuditsPublic)
def list_audits(
    session: SessionDep,
    team: TeamDep,
    status: AuditStatus | None = None,
    verdict: Verdict | None = None,
    borderline: Annotated[
        bool | None,
        Query(
            description="true: only verdicts another saliency seed could turn; false: only the others "
            "(either leaves out audits without the field: unfinished, failed, or old with an unreadable config)"
        ),
    ] = None,
    skip: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = MAX_PAGE_SIZE,
) -> AuditsPublic:
    rows, count = crud.list_audits(
        session=session,
        team_id=team.id,
        status=status,
        verdict=verdict,
        borderline=borderline,
        skip=skip,
        limit=limit,
    )
    return AuditsPublic(data=[AuditPublic.from_audit(row) for row in rows], count=count)


def require_succeeded(audit: Audit) -> None:
    """409 with the reason while an audit has no results to show."""
    if audit.status != AuditStatus.succeeded:
        reason = f": {audit.error}" if audit.error else ""
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"audit {audit.id} is {audit.status.value}{reason}; results exist once it succeeded",
        )
