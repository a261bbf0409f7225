"""FastAPI dependencies as ``Annotated`` aliases: settings, sessions, the current team, lookup-or-404.

A 401 or a 404 is written here once. Lookups are scoped to the caller's team and answer 404 (not 403)
for another team's ids, so ids reveal nothing about other teams.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app import crud
from app.core.db import session_scope
from app.core.queue import AuditQueue
from app.core.settings import Settings
from app.core.storage import Storage
from app.models import Audit, Checkpoint, Team


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    with session_scope(settings.database_url_resolved) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_storage(settings: SettingsDep) -> Storage:
    return Storage(settings.storage_root)


StorageDep = Annotated[Storage, Depends(get_storage)]


def get_queue(request: Request) -> AuditQueue:
    queue: AuditQueue = request.app.state.queue
    return queue


QueueDep = Annotated[AuditQueue, Depends(get_queue)]

_bearer = HTTPBearer(auto_error=False, description="An API key from `backdoor-audit keys create --team NAME`")


def team_for_api_key(session: Session, key: str | None) -> Team | None:
    """The team owning ``key``; None for a missing or unknown key. Reusable for keys from other places
    (the dashboard reads the same key from an HttpOnly cookie)."""
    if not key:
        return None
    return crud.get_team_for_key(session=session, key=key)


def get_current_team(
    session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Team:
    team = team_for_api_key(session, credentials.credentials if credentials else None)
    if team is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or unknown API key: send 'Authorization: Bearer <key>' with a key from "
            "'backdoor-audit keys create --team NAME'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return team


TeamDep = Annotated[Team, Depends(get_current_team)]


def owned_checkpoint(session: Session, team: Team, checkpoint_id: uuid.UUID) -> Checkpoint:
    """The team's checkpoint, or a 404 (also for another team's id); the API's and the dashboard's."""
    checkpoint = crud.get_checkpoint(session=session, team_id=team.id, checkpoint_id=checkpoint_id)
    if checkpoint is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"checkpoint {checkpoint_id} not found")
    return checkpoint


def owned_audit(session: Session, team: Team, audit_id: uuid.UUID) -> Audit:
    """The team's audit, or a 404 (also for another team's id); the API's and the dashboard's."""
    audit = crud.get_audit(session=session, team_id=team.id, audit_id=audit_id)
    if audit is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"audit {audit_id} not found")
    return audit


def get_team_checkpoint(checkpoint_id: uuid.UUID, session: SessionDep, team: TeamDep) -> Checkpoint:
    return owned_checkpoint(session, team, checkpoint_id)


CheckpointDep = Annotated[Checkpoint, Depends(get_team_checkpoint)]


def get_team_audit(audit_id: uuid.UUID, session: SessionDep, team: TeamDep) -> Audit:
    return owned_audit(session, team, audit_id)


AuditDep = Annotated[Audit, Depends(get_team_audit)]
