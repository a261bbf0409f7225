"""Database tables (SQLAlchemy 2.0 typed models).

Teams own API keys, checkpoints and audits. An audit keeps one ``class_results`` row per class index,
written by the worker that computed that class, so a restarted audit redoes only the missing classes.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names, so migrations can drop and alter them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database (SQLite drops the zone; this puts it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None and value.tzinfo else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class AuditStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


class Verdict(enum.StrEnum):
    clean = "clean"
    suspicious = "suspicious"
    backdoored = "backdoored"


UNFINISHED = (AuditStatus.queued, AuditStatus.running)


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiKey(Base):
    """A team's API key, stored only as the SHA-256 of the key (see ``app.crud.create_api_key``)."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings so a key can be recognised
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    team: Mapped[Team] = relationship()


class Checkpoint(Base):
    """An uploaded model; its bytes live in content-addressed storage under ``sha256``."""

    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("team_id", "sha256", name="uq_checkpoints_team_id_sha256"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(200))
    arch: Mapped[str | None] = mapped_column(String(100))
    num_classes: Mapped[int] = mapped_column(Integer)
    input_shape: Mapped[list[int]] = mapped_column(JSON)
    mean: Mapped[list[float] | None] = mapped_column(JSON)
    std: Mapped[list[float] | None] = mapped_column(JSON)
    class_names: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Audit(Base):
    """One user-visible audit job of a checkpoint; Celery tasks are an implementation detail of it."""

    __tablename__ = "audits"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    # Audits outlive a deleted checkpoint (audit trail); the sha256 still names the model they judged.
    checkpoint_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="SET NULL"), index=True
    )
    checkpoint_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[AuditStatus] = mapped_column(
        Enum(AuditStatus, name="audit_status", native_enum=False, length=16),
        default=AuditStatus.queued,
        index=True,
    )
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer)
    # classes in flight, counted by the share of their optimisation steps done (workers add and remove
    # their part), so progress moves while a group of classes is computed, not only when it ends
    progress_partial: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    verdict: Mapped[Verdict | None] = mapped_column(
        Enum(Verdict, name="verdict", native_enum=False, length=16), index=True
    )
    probability: Mapped[float | None] = mapped_column(Float)
    # another saliency seed could turn the verdict (report.json's borderline); NULL while unfinished, for a
    # detector without a measured seed spread, and for audits finished before this column existed whose
    # stored config no longer parses (migration 7b2f7f421bd3 backfilled the others)
    borderline: Mapped[bool | None] = mapped_column()
    suspected_classes: Mapped[list[int] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    device: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # when the reaper last sent the audit again because nothing had happened to it for STALL_TIMEOUT_S
    requeued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ClassResult(Base):
    """The map of one class of one audit; upserted by ``(audit_id, class_index)`` so retries are harmless."""

    __tablename__ = "class_results"
    __table_args__ = (UniqueConstraint("audit_id", "class_index", name="uq_class_results_audit_id_class_index"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    audit_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("audits.id", ondelete="CASCADE"), index=True)
    class_index: Mapped[int] = mapped_column(Integer)
    success_rate: Mapped[float] = mapped_column(Float)
    stability: Mapped[float] = mapped_column(Float)
    map_key: Mapped[str] = mapped_column(String(300))  # storage key of the saved class map
    score: Mapped[float | None] = mapped_column(Float)  # filled in by the chord callback
    suspected: Mapped[bool | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
