"""Data access, as keyword-only functions over a session. Callers own the transaction (commit/rollback).

Every read a client can trigger is scoped by ``team_id``, so one team never sees another's rows.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.models import UNFINISHED, ApiKey, Audit, AuditStatus, Checkpoint, ClassResult, Team, Verdict, utcnow

API_KEY_PREFIX = "ba_"


# --- teams and API keys ---------------------------------------------------------------------------


def hash_api_key(key: str) -> str:
    """SHA-256 of a key. Keys carry 256 random bits, so a fast hash is safe here (unlike for passwords)."""
    return hashlib.sha256(key.encode()).hexdigest()


def get_or_create_team(*, session: Session, name: str) -> Team:
    team = session.scalar(select(Team).where(Team.name == name))
    if team is None:
        team = Team(name=name)
        session.add(team)
        session.flush()
    return team


def create_api_key(*, session: Session, team: Team) -> str:
    """Store a new key for ``team`` and return it in plain text: the only time it is ever visible."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(team_id=team.id, key_hash=hash_api_key(key), prefix=key[:10]))
    session.flush()
    return key


def get_team_for_key(*, session: Session, key: str) -> Team | None:
    return session.scalar(select(Team).join(ApiKey).where(ApiKey.key_hash == hash_api_key(key)))


def count_api_keys(*, session: Session) -> int:
    return session.scalar(select(func.count()).select_from(ApiKey)) or 0


# --- checkpoints -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointFacts:
    """What intake established about an upload (declared metadata, checked against the weights)."""

    sha256: str
    size_bytes: int
    format: str
    num_classes: int
    input_shape: list[int]
    arch: str | None = None
    name: str | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    class_names: list[str] | None = None


def create_checkpoint(*, session: Session, team_id: uuid.UUID, facts: CheckpointFacts) -> Checkpoint:
    checkpoint = Checkpoint(team_id=team_id, **asdict(facts))
    session.add(checkpoint)
    session.flush()
    return checkpoint


def get_checkpoint(*, session: Session, team_id: uuid.UUID, checkpoint_id: uuid.UUID) -> Checkpoint | None:
    return session.scalar(select(Checkpoint).where(Checkpoint.id == checkpoint_id, Checkpoint.team_id == team_id))


def get_checkpoint_by_sha256(*, session: Session, team_id: uuid.UUID, sha256: str) -> Checkpoint | None:
    return session.scalar(select(Checkpoint).where(Checkpoint.sha256 == sha256, Checkpoint.team_id == team_id))


def list_checkpoints(
    *, session: Session, team_id: uuid.UUID, skip: int = 0, limit: int = 100
) -> tuple[Sequence[Checkpoint], int]:
    where = Checkpoint.team_id == team_id
    count = session.scalar(select(func.count()).select_from(Checkpoint).where(where)) or 0
    rows = session.scalars(
        select(Checkpoint).where(where).order_by(Checkpoint.created_at.desc(), Checkpoint.id).offset(skip).limit(limit)
    ).all()
    return rows, count


def checkpoint_has_unfinished_audits(*, session: Session, checkpoint_id: uuid.UUID) -> bool:
    query = select(Audit.id).where(Audit.checkpoint_id == checkpoint_id, Audit.status.in_(UNFINISHED)).limit(1)
    return session.scalar(query) is not None


def lock_checkpoint(*, session: Session, checkpoint_id: uuid.UUID) -> bool:
    """Lock a checkpoint row until the transaction ends (``SELECT ... FOR UPDATE``); False if it is gone.

    Taken before a delete checks for unfinished audits: an audit being inserted holds a key-share lock on
    the row (its foreign key), so the delete waits for it and then sees it, and an audit inserted after
    the delete finds no row (IntegrityError). SQLite ignores FOR UPDATE; it runs one writer at a time.
    """
    query = select(Checkpoint.id).where(Checkpoint.id == checkpoint_id).with_for_update()
    return session.scalar(query) is not None


def checkpoint_bytes_in_use(*, session: Session, sha256: str) -> bool:
    """True while any checkpoint row (of any team) uses these bytes."""
    query = select(func.count()).select_from(Checkpoint).where(Checkpoint.sha256 == sha256)
    return (session.scalar(query) or 0) > 0


# stand-ins for the advisory lock where there is none (SQLite: the embedded server, one process)
_LOCAL_BYTES_LOCKS = [threading.Lock() for _ in range(64)]


@contextmanager
def checkpoint_bytes_lock(*, session: Session, sha256: str) -> Iterator[None]:
    """Serialise, per sha256, deciding whether a stored checkpoint file should exist and acting on it.

    A file is shared by every team that uploaded the same bytes. Without this, an upload could find the
    file present and keep it, a delete of another team's last row could count no user of the bytes (the
    upload's row not yet committed) and unlink it, and the upload's row would commit with no file.
    Holders decide (count rows, or insert one), move or unlink the file, and commit inside the block.

    Postgres: a transaction-level advisory lock, released by that commit (or a rollback), so it holds
    across API processes. Elsewhere a lock in this process, released when the block ends.
    """
    if session.get_bind().dialect.name == "postgresql":
        # 60 bits of the hash as the lock key (a bigint); another sha256 sharing them only waits a little longer
        session.execute(select(func.pg_advisory_xact_lock(int(sha256[:15], 16))))
        yield
        return
    with _LOCAL_BYTES_LOCKS[int(sha256[:8], 16) % len(_LOCAL_BYTES_LOCKS)]:
        yield


def delete_checkpoint(*, session: Session, checkpoint: Checkpoint) -> None:
    """Delete the row. Whether its bytes can go too is for ``checkpoint_bytes_in_use`` to say, under
    ``checkpoint_bytes_lock`` (another team may be uploading the same bytes).

    The team's audits of it stay (their ``checkpoint_id`` becomes NULL): reports are an audit trail.
    """
    session.execute(update(Audit).where(Audit.checkpoint_id == checkpoint.id).values(checkpoint_id=None))
    session.delete(checkpoint)
    session.flush()


# --- audits ------------------------------------------------------------------------------------------


def create_audit(*, session: Session, team_id: uuid.UUID, checkpoint: Checkpoint, config: dict[str, Any]) -> Audit:
    audit = Audit(
        team_id=team_id,
        checkpoint_id=checkpoint.id,
        checkpoint_sha256=checkpoint.sha256,
        status=AuditStatus.queued,
        config=config,
        progress_done=0,
        progress_total=checkpoint.num_classes,
    )
    session.add(audit)
    session.flush()
    return audit


def get_audit(*, session: Session, team_id: uuid.UUID, audit_id: uuid.UUID) -> Audit | None:
    return session.scalar(select(Audit).where(Audit.id == audit_id, Audit.team_id == team_id))


def list_audits(
    *,
    session: Session,
    team_id: uuid.UUID,
    status: AuditStatus | None = None,
    verdict: Verdict | None = None,
    borderline: bool | None = None,
    skip: int = 0,
    limit: int = 100,
) -> tuple[Sequence[Audit], int]:
    conditions = [Audit.team_id == team_id]
    if status is not None:
        conditions.append(Audit.status == status)
    if verdict is not None:
        conditions.append(Audit.verdict == verdict)
    if borderline is not None:  # either value leaves out the audits with NULL (unfinished, failed, bad old config)
        conditions.append(Audit.borderline == borderline)
    count = session.scalar(select(func.count()).select_from(Audit).where(*conditions)) or 0
    rows = session.scalars(
        select(Audit).where(*conditions).order_by(Audit.created_at.desc(), Audit.id).offset(skip).limit(limit)
    ).all()
    return rows, count


def count_audits_by_status(*, session: Session) -> dict[AuditStatus, int]:
    rows = session.execute(select(Audit.status, func.count()).group_by(Audit.status)).all()
    counts = dict.fromkeys(AuditStatus, 0)
    counts.update({status: n for status, n in rows})
    return counts


# --- worker side: ids come from task arguments, not from a client ------------------------------------


def get_audit_for_worker(*, session: Session, audit_id: uuid.UUID) -> Audit | None:
    return session.get(Audit, audit_id)


def get_checkpoint_for_worker(*, session: Session, checkpoint_id: uuid.UUID) -> Checkpoint | None:
    return session.get(Checkpoint, checkpoint_id)


def list_unfinished_audit_ids(*, session: Session) -> list[uuid.UUID]:
    return list(session.scalars(select(Audit.id).where(Audit.status.in_(UNFINISHED)).order_by(Audit.created_at)))


def list_stalled_audit_ids(*, session: Session, idle_since: datetime) -> list[uuid.UUID]:
    """Unfinished audits with nothing recorded since ``idle_since``: not created, started, sent again
    by the reaper, nor given a class result. Their messages were most likely lost (a broker that lost
    its data, a purged queue, a chord whose state expired)."""
    last_result = (
        select(ClassResult.audit_id, func.max(ClassResult.created_at).label("at"))
        .group_by(ClassResult.audit_id)
        .subquery()
    )
    query = (
        select(Audit.id)
        .outerjoin(last_result, last_result.c.audit_id == Audit.id)
        .where(
            Audit.status.in_(UNFINISHED),
            Audit.created_at < idle_since,
            (Audit.started_at.is_(None)) | (Audit.started_at < idle_since),
            (Audit.requeued_at.is_(None)) | (Audit.requeued_at < idle_since),
            (last_result.c.at.is_(None)) | (last_result.c.at < idle_since),
        )
        .order_by(Audit.created_at)
    )
    return list(session.scalars(query))


def mark_audit_requeued(*, session: Session, audit_id: uuid.UUID) -> None:
    session.execute(update(Audit).where(Audit.id == audit_id).values(requeued_at=utcnow()))


def mark_audit_running(*, session: Session, audit_id: uuid.UUID, device: str | None = None) -> None:
    """queued -> running (idempotent: a redelivered orchestration keeps the first start time)."""
    session.execute(
        update(Audit)
        .where(Audit.id == audit_id, Audit.status == AuditStatus.queued)
        .values(status=AuditStatus.running, started_at=utcnow())
    )
    if device is not None:
        session.execute(update(Audit).where(Audit.id == audit_id).values(device=device))


def upsert_class_result(
    *,
    session: Session,
    audit_id: uuid.UUID,
    class_index: int,
    success_rate: float,
    stability: float,
    map_key: str,
) -> None:
    """Insert or replace the result of one class, then refresh the audit's progress from the row count."""
    values = {
        "audit_id": audit_id,
        "class_index": class_index,
        "success_rate": success_rate,
        "stability": stability,
        "map_key": map_key,
    }
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(ClassResult).values(id=uuid.uuid4(), created_at=utcnow(), **values)
    statement = statement.on_conflict_do_update(
        index_elements=["audit_id", "class_index"],
        set_={"success_rate": success_rate, "stability": stability, "map_key": map_key},
    )
    session.execute(statement)
    done = select(func.count()).select_from(ClassResult).where(ClassResult.audit_id == audit_id).scalar_subquery()
    session.execute(update(Audit).where(Audit.id == audit_id).values(progress_done=done))


def add_partial_progress(*, session: Session, audit_id: uuid.UUID, classes: float) -> None:
    """Add (or, negative, remove) a worker's share of the classes in flight; atomic, so workers computing
    groups of one audit side by side do not overwrite each other."""
    session.execute(update(Audit).where(Audit.id == audit_id).values(progress_partial=Audit.progress_partial + classes))


def clear_partial_progress(*, session: Session, audit_ids: Sequence[uuid.UUID]) -> None:
    """Drop the in-flight shares of these audits; only for when no worker computes any of them (a killed
    worker never takes its share back, and the audit is about to be sent again)."""
    if audit_ids:
        session.execute(update(Audit).where(Audit.id.in_(audit_ids)).values(progress_partial=0.0))


def list_class_results(*, session: Session, audit_id: uuid.UUID) -> Sequence[ClassResult]:
    query = select(ClassResult).where(ClassResult.audit_id == audit_id).order_by(ClassResult.class_index)
    return session.scalars(query).all()


def complete_audit(
    *,
    session: Session,
    audit_id: uuid.UUID,
    verdict: Verdict,
    probability: float,
    borderline: bool | None,
    suspected_classes: list[int],
    class_scores: dict[int, tuple[float, bool]],
    finished_at: datetime | None = None,
) -> None:
    """Record the verdict; ``class_scores`` maps class index -> (score, suspected), ``borderline`` is
    report.json's (None where the detector has no measured seed spread)."""
    for result in list_class_results(session=session, audit_id=audit_id):
        if result.class_index in class_scores:
            result.score, result.suspected = class_scores[result.class_index]
    session.execute(
        update(Audit)
        .where(Audit.id == audit_id)
        .values(
            status=AuditStatus.succeeded,
            verdict=verdict,
            probability=probability,
            borderline=borderline,
            suspected_classes=suspected_classes,
            error=None,
            finished_at=finished_at or utcnow(),
        )
    )


def fail_audit(*, session: Session, audit_id: uuid.UUID, error: str) -> None:
    """Mark an unfinished audit failed with a message for the user; a finished audit is left alone."""
    session.execute(
        update(Audit)
        .where(Audit.id == audit_id, Audit.status.in_(UNFINISHED))
        .values(status=AuditStatus.failed, error=error, finished_at=utcnow())
    )
