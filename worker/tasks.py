"""Celery tasks of an audit: orchestrate -> chord(compute_maps per class group) -> finalize_audit.

Tasks are thin and idempotent. They take ids, read everything else from the database and storage, and
write results keyed by ``(audit_id, class_index)``; so a redelivered task (acks_late, or a worker killed
mid-audit) recomputes at most its own group, and a re-run orchestration computes only missing classes.
Errors a user can fix (a bad checkpoint or config, a time limit) fail the audit with a message and are
not retried; transient infrastructure errors are retried with backoff. A class whose computation was
started ``task_max_attempts`` times without finishing (its worker killed, by the OOM killer say) fails
the audit instead of being redelivered forever. An audit whose messages were lost altogether (a
broker that lost its data) is sent again by ``reap_stalled_audits``, which the beat runs periodically.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc
import torch
from celery import Task, chord, group
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.orm import Session

from app import crud
from app.core.db import session_scope
from app.core.queue import COMPUTE_MAPS, FINALIZE_AUDIT, ORCHESTRATE_AUDIT, REAP_STALLED_AUDITS, VALIDATE_CHECKPOINT
from app.core.settings import get_settings
from app.core.storage import REPORT_FILE, Storage
from app.models import Audit, AuditStatus, Checkpoint, Verdict, utcnow
from worker import runtime
from worker.celery_app import celery_app
from worker.config import AuditConfig
from worker.loading.types import CheckpointError, LoadedModel

log = logging.getLogger(__name__)
T = TypeVar("T")

# Worth retrying: the database, the broker or the result store was briefly unreachable.
TRANSIENT_ERRORS = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
)


class AuditFailed(Exception):
    """The audit cannot succeed; the message tells the user what to change."""


def _user_message(exc: BaseException) -> str | None:
    """The actionable message for errors a user can fix; None for anything else (a bug or an outage)."""
    settings = get_settings()
    if isinstance(exc, AuditFailed | CheckpointError):
        return str(exc)
    if isinstance(exc, SoftTimeLimitExceeded):
        return (
            f"the audit exceeded the time limit of {settings.task_soft_time_limit_s} s per task; lower "
            "saliency.iterations or restarts, or raise TASK_SOFT_TIME_LIMIT_S and TASK_TIME_LIMIT_S"
        )
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return "the GPU ran out of memory; lower saliency.class_batch or saliency.seeds_per_step and retry"
    if isinstance(exc, ValueError):  # config or shape problems raised by the science code
        return f"invalid audit input: {exc}"
    return None


class AuditTask(Task):
    """Base of every audit task: retries transient errors, turns any final failure into a failed audit."""

    autoretry_for = TRANSIENT_ERRORS
    retry_backoff = 5
    retry_backoff_max = 300
    retry_jitter = True
    max_retries = get_settings().task_max_retries
    acks_late = True

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        message = _user_message(exc) or (
            f"internal error in {self.name} ({exc.__class__.__name__}: {exc}); submit the audit again, "
            "and report it to the operators if it repeats"
        )
        _fail(args[0], message)


def _fail(audit_id: str, message: str) -> None:
    with session_scope(get_settings().database_url_resolved) as session:
        crud.fail_audit(session=session, audit_id=uuid.UUID(audit_id), error=message)
    log.warning("audit %s failed: %s", audit_id, message)


@contextmanager
def _session() -> Iterator[Session]:
    with session_scope(get_settings().database_url_resolved) as session:
        yield session


def _guarded(audit_id: str, work: Callable[[], T]) -> T | None:
    """Run ``work``; on an error the user can fix, fail the audit and return None instead of raising.

    Returning normally keeps a chord going to its callback, which then sees the failed audit and stops;
    raising would leave the chord waiting on the result backend for nothing.
    """
    try:
        return work()
    except Exception as exc:
        message = _user_message(exc)
        if message is None:
            raise
        _fail(audit_id, message)
        return None


def _load_unfinished(session: Session, audit_id: str) -> tuple[Audit, Checkpoint] | None:
    audit = crud.get_audit_for_worker(session=session, audit_id=uuid.UUID(audit_id))
    if audit is None or audit.status in (AuditStatus.succeeded, AuditStatus.failed):
        return None  # deleted, or a redelivered message of a finished audit
    checkpoint = (
        crud.get_checkpoint_for_worker(session=session, checkpoint_id=audit.checkpoint_id)
        if audit.checkpoint_id
        else None
    )
    if checkpoint is None:
        raise AuditFailed("the audited checkpoint was deleted before the audit ran; upload it again and resubmit")
    return audit, checkpoint


def _model(checkpoint: Checkpoint) -> LoadedModel:
    settings = get_settings()
    spec = runtime.spec_from_dict(
        {
            "input_shape": checkpoint.input_shape,
            "num_classes": checkpoint.num_classes,
            "arch": checkpoint.arch,
            "mean": checkpoint.mean,
            "std": checkpoint.std,
            "class_names": checkpoint.class_names,
        }
    )
    path = Storage(settings.storage_root).path(Storage.checkpoint_key(checkpoint.sha256))
    if not path.is_file():
        raise AuditFailed(f"checkpoint file {checkpoint.sha256[:12]}... is missing from storage; upload it again")
    return runtime.get_model(
        path,
        spec,
        checkpoint.sha256,
        max_bytes=settings.max_checkpoint_bytes,
        on=runtime.device(settings.device),
        cache_size=settings.model_cache_size,
    )


def map_file(class_index: int) -> str:
    return f"map_{class_index:04d}.safetensors"


@celery_app.task(name=ORCHESTRATE_AUDIT, base=AuditTask, ignore_result=True)
def orchestrate_audit(audit_id: str) -> None:
    """Fan the classes still missing a map out as a chord of ``compute_maps``; finalize when all are in."""

    def plan() -> list[list[int]] | None:
        with _session() as session:
            found = _load_unfinished(session, audit_id)
            if found is None:
                return None
            audit, checkpoint = found
            AuditConfig.from_dict(audit.config)  # refuse a stored config this worker version cannot run
            crud.mark_audit_running(session=session, audit_id=audit.id)
            done = {r.class_index for r in crud.list_class_results(session=session, audit_id=audit.id)}
            missing = [k for k in range(checkpoint.num_classes) if k not in done]
        size = get_settings().class_group_size
        return [missing[i : i + size] for i in range(0, len(missing), size)]

    groups = _guarded(audit_id, plan)
    if groups is None:
        return
    finalize = finalize_audit.si(audit_id)
    if not groups:
        finalize.apply_async()
        return
    chord(group(compute_maps.si(audit_id, classes) for classes in groups))(finalize)


@celery_app.task(name=REAP_STALLED_AUDITS, ignore_result=True)
def reap_stalled_audits() -> int:
    """Send again every unfinished audit with nothing recorded for ``STALL_TIMEOUT_S``; return how many.

    Orchestration computes only the classes still missing, so a resend is safe. The timeout outlasts
    the longest task and Redis's own redelivery, so nothing that is still running is sent again, and
    each resend is recorded (``requeued_at``): an audit is sent at most once per timeout. An audit
    still waiting behind a queue longer than the timeout is sent twice; the copy's tasks skip every
    class already recorded, though two GPU workers may compute a class side by side once.
    """
    settings = get_settings()
    idle_since = utcnow() - timedelta(seconds=settings.stall_timeout_resolved)
    with _session() as session:
        stalled = crud.list_stalled_audit_ids(session=session, idle_since=idle_since)
        for audit_id in stalled:
            crud.mark_audit_requeued(session=session, audit_id=audit_id)
    for audit_id in stalled:
        log.warning("audit %s: nothing recorded since %s; sending it again", audit_id, idle_since.isoformat())
        orchestrate_audit.delay(str(audit_id))
    return len(stalled)


@celery_app.task(name=COMPUTE_MAPS, base=AuditTask)
def compute_maps(audit_id: str, class_indices: list[int]) -> None:
    """Compute, store and record the maps of ``class_indices`` (skipping those already recorded)."""
    from worker.saliency.engine import compute_class_maps
    from worker.saliency.io import save_class_map

    def work() -> None:
        settings = get_settings()
        with _session() as session:
            found = _load_unfinished(session, audit_id)
            if found is None:
                return
            audit, checkpoint = found
            done = {r.class_index for r in crud.list_class_results(session=session, audit_id=audit.id)}
            config = AuditConfig.from_dict(audit.config)
        todo = [k for k in class_indices if k not in done]
        if not todo:
            return
        storage = Storage(settings.storage_root)
        _count_attempt(storage, audit.id, todo, settings.task_max_attempts)
        loaded = _model(checkpoint)
        on = runtime.device(settings.device)
        in_flight = _InFlightProgress(audit.id, len(todo))
        maps = compute_class_maps(
            loaded.module,
            loaded.input_shape,
            loaded.num_classes,
            config.saliency,
            classes=todo,
            device=on,
            progress=in_flight.step,
        )
        for cmap in maps:
            key = Storage.audit_key(audit.id, map_file(cmap.class_index))
            save_class_map(storage.path(key), cmap)
            with _session() as session:  # one commit per class: progress shows class by class
                in_flight.hand_over_one(session)
                crud.upsert_class_result(
                    session=session,
                    audit_id=audit.id,
                    class_index=cmap.class_index,
                    success_rate=cmap.success_rate,
                    stability=cmap.stability,
                    map_key=key,
                )
                crud.mark_audit_running(session=session, audit_id=audit.id, device=str(on))

    _guarded(audit_id, work)


class _InFlightProgress:
    """A ``compute_maps`` task's share of the audit's progress while its classes are optimised.

    The engine reports steps; at most every ``interval`` seconds the task adds what it gained since its
    last report to ``audits.progress_partial``, in classes (its class count times the share of steps
    done). As each class's result is recorded, that class's share is taken back in the same
    transaction, so the finished class moves from the partial count to ``progress_done`` at once.
    """

    interval = 1.0  # seconds between reports: a database write per report

    def __init__(self, audit_id: uuid.UUID, classes: int) -> None:
        self.audit_id = audit_id
        self.classes = classes
        self.reported = 0.0  # classes this task has added to progress_partial and not taken back
        self.last_report = time.monotonic()

    def step(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last_report < self.interval or done >= total:
            return
        gained = self.classes * done / total - self.reported
        with _session() as session:
            crud.add_partial_progress(session=session, audit_id=self.audit_id, classes=gained)
        self.reported += gained
        self.last_report = now

    def hand_over_one(self, session: Session) -> None:
        """Take back one class's share, in the session that records that class's result."""
        share = self.reported / self.classes
        crud.add_partial_progress(session=session, audit_id=self.audit_id, classes=-share)
        self.reported -= share
        self.classes -= 1


def _count_attempt(storage: Storage, audit_id: uuid.UUID, classes: list[int], limit: int) -> None:
    """Record one more start of computing ``classes``; fail the audit once a class has had ``limit`` starts.

    A worker killed mid-task leaves no exception: Redis redelivers its task (acks_late with
    reject_on_worker_lost) and the embedded service re-plans it on restart, so a model that exhausts
    the host's memory would be retried forever. The counts are files beside the maps, so they survive
    the worker; a class whose map is recorded is never started again.
    """
    keys = {k: Storage.audit_key(audit_id, f"attempts_{k:04d}") for k in classes}
    counts = {k: int(storage.path(key).read_text()) if storage.exists(key) else 0 for k, key in keys.items()}
    exhausted = [k for k, count in counts.items() if count >= limit]
    if exhausted:
        raise AuditFailed(
            f"the maps of classes {exhausted[:10]} were started {limit} times without finishing: the worker "
            "was most likely killed (out of host memory?) or crashed. Lower saliency.class_batch or "
            "saliency.seeds_per_step, or give the worker more memory, and submit the audit again"
        )
    for k, key in keys.items():
        storage.write_bytes(key, str(counts[k] + 1).encode())


@celery_app.task(name=FINALIZE_AUDIT, base=AuditTask, ignore_result=True)
def finalize_audit(audit_id: str) -> None:
    """Score all maps, write the report and images, and record the verdict (the chord's callback)."""
    from worker.report import build_report, render_images
    from worker.saliency.io import load_class_map
    from worker.scoring.score import score_audit

    def work() -> None:
        settings = get_settings()
        storage = Storage(settings.storage_root)
        with _session() as session:
            found = _load_unfinished(session, audit_id)
            if found is None:
                return
            audit, checkpoint = found
            results = crud.list_class_results(session=session, audit_id=audit.id)
            config = AuditConfig.from_dict(audit.config)
        missing = sorted(set(range(checkpoint.num_classes)) - {r.class_index for r in results})
        if missing:
            raise AuditFailed(f"maps of classes {missing[:10]} were not computed; submit the audit again")
        loaded = _model(checkpoint)
        on = runtime.device(settings.device)
        maps = [load_class_map(storage.path(r.map_key)) for r in results]
        score = score_audit(loaded.module, maps, loaded.input_shape, config=config.scoring, device=on)
        finished = utcnow()
        seconds = (finished - audit.started_at).total_seconds() if audit.started_at else 0.0
        report = build_report(loaded=loaded, maps=maps, score=score, config=config, seconds=seconds, device=str(on))
        for name, png in render_images(maps, score).items():
            storage.write_bytes(Storage.audit_key(audit.id, name), png)
        storage.write_bytes(Storage.audit_key(audit.id, REPORT_FILE), json.dumps(report, indent=2).encode())
        with _session() as session:
            crud.complete_audit(
                session=session,
                audit_id=audit.id,
                verdict=Verdict(report["verdict"]),
                probability=float(report["probability"]),
                borderline=report["borderline"],
                suspected_classes=[int(k) for k in report["suspected_classes"]],
                class_scores={
                    int(c["class_index"]): (float(c["score"]), bool(c["suspected"])) for c in report["classes"]
                },
                finished_at=finished,
            )

    _guarded(audit_id, work)


@celery_app.task(name=VALIDATE_CHECKPOINT, acks_late=True)
def validate_checkpoint(staged_key: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Checkpoint intake for a torch-free API (``CHECKPOINT_VALIDATION=queue``); see ``app.core.intake``."""
    settings = get_settings()
    path = Storage(settings.storage_root).path(staged_key)
    return runtime.check_upload(path, spec, max_bytes=settings.max_checkpoint_bytes)
