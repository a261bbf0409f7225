"""The Celery client: configuration shared with the workers, and the calls the API makes.

The API enqueues by task name (``send_task``), so it never imports the worker package or torch.
``worker.celery_app`` builds its Celery app from the same ``make_celery`` so both sides agree on
queues, serializers and broker options.
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import Celery

from app.core.settings import Settings

GPU_QUEUE = "gpu"
CPU_QUEUE = "cpu"

ORCHESTRATE_AUDIT = "backdoor_audit.orchestrate_audit"
COMPUTE_MAPS = "backdoor_audit.compute_maps"
FINALIZE_AUDIT = "backdoor_audit.finalize_audit"
VALIDATE_CHECKPOINT = "backdoor_audit.validate_checkpoint"
REAP_STALLED_AUDITS = "backdoor_audit.reap_stalled_audits"

TASK_ROUTES = {
    ORCHESTRATE_AUDIT: {"queue": CPU_QUEUE},
    VALIDATE_CHECKPOINT: {"queue": CPU_QUEUE},
    REAP_STALLED_AUDITS: {"queue": CPU_QUEUE},
    COMPUTE_MAPS: {"queue": GPU_QUEUE},
    FINALIZE_AUDIT: {"queue": GPU_QUEUE},
}


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    if settings.broker_url is None:  # the embedded filesystem broker: one folder both ways
        folder = str(settings.broker_folder)
        return {"data_folder_in": folder, "data_folder_out": folder, "control_folder": folder}
    # Redis redelivers a task unacked for this long; it must outlast the longest task (acks_late).
    return {"visibility_timeout": settings.visibility_timeout_s}


def make_celery(settings: Settings) -> Celery:
    """A Celery app configured for this deployment (API client and workers alike)."""
    celery = Celery("backdoor_audit", broker=settings.broker_url_resolved, backend=settings.result_backend_resolved)
    celery.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_routes=TASK_ROUTES,
        task_default_queue=CPU_QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,  # a killed worker's task goes back to the queue
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.task_soft_time_limit_s,
        task_time_limit=settings.task_time_limit_s,
        broker_transport_options=broker_transport_options(settings),
        result_expires=7 * 24 * 3600,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # run by `celery -A worker.celery_app beat` (one instance per deployment)
        beat_schedule={
            "reap-stalled-audits": {"task": REAP_STALLED_AUDITS, "schedule": float(settings.reap_interval_s)}
        },
    )
    return celery


class AuditQueue:
    """What the API asks of the workers. Tests replace it with a recorder (``app.state.queue``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._celery: Celery | None = None

    @property
    def celery(self) -> Celery:
        if self._celery is None:  # built on first use: importing the API needs no broker
            self._celery = make_celery(self.settings)
        return self._celery

    def enqueue_audit(self, audit_id: uuid.UUID) -> None:
        """Start an audit; call only after the audit row is committed, or a fast worker may not find it."""
        self.celery.send_task(ORCHESTRATE_AUDIT, args=[str(audit_id)])

    def validate_checkpoint(self, path: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Run checkpoint intake on a `cpu` worker and wait for its verdict (see ``app.core.intake``)."""
        result = self.celery.send_task(VALIDATE_CHECKPOINT, args=[path, spec])
        try:
            outcome: dict[str, Any] = result.get(timeout=self.settings.validation_timeout_s, propagate=True)
        finally:
            result.forget()
        return outcome

    def ping_broker(self) -> None:
        """Raise if the broker cannot be reached within a few seconds."""
        with self.celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=3)
