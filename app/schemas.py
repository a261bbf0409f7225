"""Request and response bodies of the REST API (pydantic), named ``<Thing>Create`` / ``<Thing>Public``."""

from __future__ import annotations

import json
import math
import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.models import Audit, AuditStatus, Verdict

MAX_PAGE_SIZE = 100
# Deeper than any document a client has reason to send (an audit config is two levels, form lists one), far
# below the depth at which json.loads, pydantic or the 422 body's encoder would hit Python's recursion limit.
MAX_JSON_DEPTH = 32


class ClientJsonError(ValueError):
    """JSON from a client that is malformed, nested too deeply or holds a non-finite number; says which."""


def _refuse_constant(token: str) -> Any:
    raise ClientJsonError(f"{token} is not a JSON number; send finite numbers only")


def check_client_json(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse nesting deeper than ``max_depth`` and non-finite floats (``1e400`` parses as infinity, and
    Postgres's json type refuses NaN/Infinity, so they would end in a 500). Walks with a stack, not
    recursion, so the check itself cannot overflow."""
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ClientJsonError(f"{path or 'the value'} is {item}; send finite numbers only")
        if isinstance(item, dict | list):
            if depth >= max_depth:
                raise ClientJsonError(f"nested more than {max_depth} levels deep")
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in children:
                child_path = f"{path}[{key}]" if isinstance(item, list) else f"{path}.{key}" if path else str(key)
                stack.append((child, depth + 1, child_path))


def parse_client_json(text: str) -> Any:
    """Parse JSON a client sent as text (a form field): a ``ClientJsonError`` (a ``ValueError``, so pydantic
    turns it into a 422 entry) for invalid JSON, NaN/Infinity tokens, non-finite numbers or deep nesting."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ClientJsonError:
        raise
    except RecursionError:
        raise ClientJsonError(f"nested more than {MAX_JSON_DEPTH} levels deep") from None
    except ValueError as exc:  # JSONDecodeError, and integers longer than Python converts from text
        raise ClientJsonError(f"not valid JSON: {exc}") from None
    check_client_json(value)
    return value


def _parse_list(value: Any) -> Any:
    """Form fields arrive as text: accept a JSON list (``[1, 28, 28]``) or a comma list (``1,28,28``)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return parse_client_json(text)
    return [item.strip() for item in text.split(",") if item.strip()]


class CheckpointCreate(BaseModel):
    """The form fields sent with a checkpoint file (``POST /checkpoints``)."""

    # no NaN or infinity in any number ("nan", "inf" and "1e400" parse as floats otherwise): they are
    # meaningless as normalisation constants and Postgres's json columns refuse them
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    input_shape: list[int] = Field(min_length=3, max_length=3, description="C,H,W, e.g. 1,28,28")
    num_classes: int = Field(ge=2, le=100_000)
    arch: str | None = Field(default=None, max_length=100, description="Registered architecture name")
    name: str | None = Field(default=None, max_length=200)
    mean: list[float] | None = Field(default=None, max_length=16, description="Per-channel mean; omit if none")
    std: list[float] | None = Field(default=None, max_length=16)
    class_names: list[str] | None = Field(default=None, max_length=100_000)

    _lists = field_validator("input_shape", "mean", "std", "class_names", mode="before")(_parse_list)

    @field_validator("input_shape")
    @classmethod
    def _positive_dims(cls, value: list[int]) -> list[int]:
        if any(d < 1 or d > 4096 for d in value) or value[0] > 16:
            raise ValueError("input_shape must be C,H,W with 1 <= C <= 16 and 1 <= H, W <= 4096")
        return value


class CheckpointPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    sha256: str
    size_bytes: int
    format: str
    name: str | None
    arch: str | None
    num_classes: int
    input_shape: list[int]
    mean: list[float] | None
    std: list[float] | None
    class_names: list[str] | None
    created_at: datetime


class CheckpointsPublic(BaseModel):
    data: list[CheckpointPublic]
    count: int = Field(description="Total number of matching checkpoints, not only this page")


class AuditCreate(BaseModel):
    # ``config`` is free-form here; the route checks it with ``check_client_json`` and the worker's AuditConfig
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    checkpoint_id: uuid.UUID
    config: dict[str, Any] = Field(
        default_factory=dict,
        description='Optional overrides, e.g. {"saliency": {"iterations": 60}, "scoring": {...}}; '
        "unknown keys are refused",
    )


class Progress(BaseModel):
    done: int = Field(description="Classes whose map is computed")
    total: int = Field(description="Classes of the model")
    fraction: float = Field(
        description="Share of the audit's map computation done, 0..1: the finished classes plus the share of "
        "optimisation steps done on the classes in flight (1 once the audit succeeded)"
    )

    @classmethod
    def of(cls, audit: Audit) -> Progress:
        if audit.status == AuditStatus.succeeded:
            fraction = 1.0
        elif audit.progress_total == 0:
            fraction = 0.0
        else:
            # rounding can leave a hair below zero; a killed worker's share lingers (positive) until the audit
            # ends or serve resumes it, so the sum is capped at the whole
            in_flight = max(0.0, audit.progress_partial or 0.0)
            fraction = min(1.0, (audit.progress_done + in_flight) / audit.progress_total)
        return cls(done=audit.progress_done, total=audit.progress_total, fraction=round(fraction, 4))


class AuditPublic(BaseModel):
    id: uuid.UUID
    checkpoint_id: uuid.UUID | None = Field(description="None once the checkpoint was deleted")
    checkpoint_sha256: str
    status: AuditStatus
    progress: Progress
    verdict: Verdict | None
    probability: float | None = Field(description="P(backdoored), 0..1; set when the audit succeeded")
    borderline: bool | None = Field(
        description="True when P(backdoored) is within one saliency seed's spread of the suspicious threshold, "
        "so another seed could turn the verdict: audit the checkpoint again with two other config.saliency.seed "
        "values before relying on it. False when it is further from the threshold than that. Null while the "
        "audit is unfinished or failed, and for an old audit whose stored config this server no longer reads"
    )
    suspected_classes: list[int] | None = Field(description="Ranked suspected target classes")
    error: str | None
    config: dict[str, Any]
    device: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_audit(cls, audit: Audit) -> AuditPublic:
        return cls(
            id=audit.id,
            checkpoint_id=audit.checkpoint_id,
            checkpoint_sha256=audit.checkpoint_sha256,
            status=audit.status,
            progress=Progress.of(audit),
            verdict=audit.verdict,
            probability=audit.probability,
            borderline=audit.borderline,
            suspected_classes=audit.suspected_classes,
            error=audit.error,
            config=audit.config,
            device=audit.device,
            created_at=audit.created_at,
            started_at=audit.started_at,
            finished_at=audit.finished_at,
        )


class AuditsPublic(BaseModel):
    data: list[AuditPublic]
    count: int = Field(description="Total number of matching audits, not only this page")


class HealthPublic(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
