"""Checkpoints: upload (streamed, validated, de-duplicated per team), read, list, delete."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app import crud
from app.api.deps import CheckpointDep, QueueDep, SessionDep, SettingsDep, StorageDep, TeamDep
from app.api.uploads import receive_upload
from app.core.intake import CheckpointRejected, ValidationUnavailable, check_checkpoint
from app.core.metrics import CHECKPOINTS_UPLOADED
from app.core.queue import AuditQueue
from app.core.settings import Settings
from app.core.storage import StagedFile, Storage
from app.models import Checkpoint
from app.schemas import MAX_PAGE_SIZE, CheckpointCreate, CheckpointPublic, CheckpointsPublic

router = APIRouter(prefix="/checkpoints", tags=["checkpoints"])

UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "input_shape", "num_classes"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "input_shape": {"type": "string", "example": "1,28,28"},
                        "num_classes": {"type": "integer", "example": 10},
                        "arch": {"type": "string", "example": "small_cnn"},
                        "name": {"type": "string"},
                        "mean": {"type": "string", "example": "0.5"},
                        "std": {"type": "string", "example": "0.5"},
                        "class_names": {"type": "string", "example": '["T-shirt", "Trouser"]'},
                    },
                }
            }
        },
    }
}


@router.post(
    "",
    response_model=CheckpointPublic,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=UPLOAD_DOC,
    responses={
        200: {"description": "The team uploaded the same bytes before: the existing checkpoint"},
        413: {"description": "Larger than BACKDOOR_AUDIT_MAX_CHECKPOINT_BYTES; nothing stored"},
        415: {"description": "Not multipart/form-data"},
        422: {"description": "Missing or invalid fields, or a checkpoint intake refused; nothing stored"},
        503: {"description": "No worker validated the upload in time (queue validation); nothing stored"},
    },
)
async def upload_checkpoint(
    request: Request,
    response: Response,
    session: SessionDep,
    team: TeamDep,
    settings: SettingsDep,
    storage: StorageDep,
    queue: QueueDep,
) -> CheckpointPublic:
    """Upload a checkpoint with its metadata as a multipart form; 201 when new, 200 when already uploaded."""
    upload = await receive_upload(request, storage, settings.max_checkpoint_bytes)
    with upload.staged:  # the staging file is deleted on every path that does not move it into storage
        try:
            declared = CheckpointCreate.model_validate(upload.fields)
        except ValidationError as exc:
            raise HTTPException(422, detail=exc.errors(include_url=False, include_context=False)) from exc
        registration = _Registration(session, team.id, settings, storage, queue)
        checkpoint, created = await run_in_threadpool(registration.register, declared, upload.staged)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    if created:
        CHECKPOINTS_UPLOADED.inc()
    return CheckpointPublic.model_validate(checkpoint)


class _Registration:
    """The blocking half of an upload (intake, file move, database), run in the threadpool."""

    def __init__(
        self, session: Session, team_id: uuid.UUID, settings: Settings, storage: Storage, queue: AuditQueue
    ) -> None:
        self.session = session
        self.team_id = team_id
        self.settings = settings
        self.storage = storage
        self.queue = queue

    def _existing(self, sha256: str) -> Checkpoint | None:
        return crud.get_checkpoint_by_sha256(session=self.session, team_id=self.team_id, sha256=sha256)

    def register(self, declared: CheckpointCreate, staged: StagedFile) -> tuple[Checkpoint, bool]:
        key = Storage.checkpoint_key(staged.sha256)
        existing = self._existing(staged.sha256)
        if existing is not None:
            if not self.storage.exists(key):
                # the file went missing under the row (lost from the volume, or unlinked by a delete that raced
                # an upload before the bytes lock existed): these are the same bytes, so put them back
                with crud.checkpoint_bytes_lock(session=self.session, sha256=staged.sha256):
                    self.storage.commit(staged, key)
                    self.session.commit()
            return existing, False
        spec = declared.model_dump(exclude={"name"})
        staged_key = staged.path.relative_to(self.storage.root).as_posix()
        try:
            found = check_checkpoint(
                settings=self.settings,
                storage=self.storage,
                queue=self.queue,
                staged_key=staged_key,
                spec=spec,
            )
        except CheckpointRejected as exc:
            raise HTTPException(422, detail=f"checkpoint refused: {exc}") from exc
        except ValidationUnavailable as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from exc
        facts = crud.CheckpointFacts(
            sha256=staged.sha256,
            size_bytes=staged.size,
            format=found["format"],
            num_classes=found["num_classes"],
            input_shape=list(found["input_shape"]),
            arch=found.get("arch") or declared.arch,
            name=declared.name,
            mean=declared.mean,
            std=declared.std,
            class_names=found.get("class_names") or declared.class_names,
        )
        try:
            # under the bytes lock a delete of another team's row cannot count users of these bytes, nor
            # unlink the file, between the file being kept here and this row being committed
            with crud.checkpoint_bytes_lock(session=self.session, sha256=staged.sha256):
                # the row first: a row the database refuses leaves no file behind in storage
                checkpoint = crud.create_checkpoint(session=self.session, team_id=self.team_id, facts=facts)
                # content-addressed: the file may already be there from another team; it is kept once
                self.storage.commit(staged, key)
                self.session.commit()
        except IntegrityError:  # the same team uploaded the same bytes concurrently: theirs won
            self.session.rollback()
            existing = self._existing(staged.sha256)
            if existing is None:
                raise
            return existing, False
        return checkpoint, True


@router.get("/{checkpoint_id}", response_model=CheckpointPublic)
def read_checkpoint(checkpoint: CheckpointDep) -> Checkpoint:
    return checkpoint


@router.get("", response_model=CheckpointsPublic)
def list_checkpoints(
    session: SessionDep,
    team: TeamDep,
    skip: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = MAX_PAGE_SIZE,
) -> CheckpointsPublic:
    rows, count = crud.list_checkpoints(session=session, team_id=team.id, skip=skip, limit=limit)
    return CheckpointsPublic(data=[CheckpointPublic.model_validate(row) for row in rows], count=count)


@router.delete(
    "/{checkpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={409: {"description": "An audit of this checkpoint is still queued or running"}},
)
def delete_checkpoint(checkpoint: CheckpointDep, session: SessionDep, storage: StorageDep) -> None:
    """Delete a checkpoint and (when no other team uploaded the same bytes) its file; its audits stay."""
    # the row lock makes an audit being submitted either wait for this delete (and then find no checkpoint:
    # 404) or finish first (and then be seen just below: 409), never be orphaned with its file deleted
    if not crud.lock_checkpoint(session=session, checkpoint_id=checkpoint.id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"checkpoint {checkpoint.id} not found")
    if crud.checkpoint_has_unfinished_audits(session=session, checkpoint_id=checkpoint.id):
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail="an audit of this checkpoint is still queued or running; delete it after that audit ends",
        )
    sha256 = checkpoint.sha256
    crud.delete_checkpoint(session=session, checkpoint=checkpoint)
    session.commit()
    # counted again under the bytes lock, in a transaction of its own: an upload of the same bytes either
    # committed its row before (the file stays) or moves the file back in after this unlink
    with crud.checkpoint_bytes_lock(session=session, sha256=sha256):
        if not crud.checkpoint_bytes_in_use(session=session, sha256=sha256):
            storage.delete(Storage.checkpoint_key(sha256))
        session.commit()
