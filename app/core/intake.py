"""Checkpoint validation at upload time, in the API process or on a `cpu` worker.

Validation means running the worker's intake code (format detection, safe loading, NaN/Inf and strict
key checks), which needs torch. The API never imports torch at import time, so there are two places
to run it, picked by ``CHECKPOINT_VALIDATION``:

- ``inline``: lazily import ``worker.runtime`` and run it in the API's threadpool. No round trip and
  no wait behind audits on the embedded single worker, at the cost of torch in the API process.
- ``queue``: send a ``validate_checkpoint`` task to the `cpu` queue and wait for its outcome. This is
  how the torch-free API image of the distributed deployment works; the staging file lives on the
  storage volume the workers share, so only its storage key travels.

``auto`` (the default) is ``inline`` when torch is importable, else ``queue``. Both return the same
outcome dict, built by ``worker.runtime.check_upload``.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeoutError
from kombu.exceptions import OperationalError

from app.core.queue import AuditQueue
from app.core.settings import Settings
from app.core.storage import Storage


class CheckpointRejected(ValueError):
    """Intake refused the file; the message says why and is shown to the user as-is."""


class ValidationUnavailable(RuntimeError):
    """No worker could validate the upload (queue mode): the broker is down or no `cpu` worker answered."""


def validation_mode(settings: Settings) -> str:
    if settings.checkpoint_validation != "auto":
        return settings.checkpoint_validation
    return "inline" if importlib.util.find_spec("torch") is not None else "queue"


def check_checkpoint(
    *, settings: Settings, storage: Storage, queue: AuditQueue, staged_key: str, spec: dict[str, Any]
) -> dict[str, Any]:
    """Validate the staged file against the declared ``spec``; return what intake found (format, shapes).

    Blocking (loads the model or waits for a worker): call from a threadpool, never from the event loop.
    """
    if validation_mode(settings) == "inline":
        from worker.runtime import check_upload  # deferred: imports torch

        outcome = check_upload(storage.path(staged_key), spec, max_bytes=settings.max_checkpoint_bytes)
    else:
        try:
            outcome = queue.validate_checkpoint(staged_key, spec)
        except (CeleryTimeoutError, OperationalError, OSError) as exc:
            raise ValidationUnavailable(
                f"no worker validated the checkpoint within {settings.validation_timeout_s:g} s "
                f"({exc.__class__.__name__}); check that a worker consumes the 'cpu' queue and that the broker "
                "answers (/readyz), then upload again"
            ) from exc
    if not outcome.get("ok"):
        raise CheckpointRejected(str(outcome.get("error") or "the checkpoint was refused"))
    facts: dict[str, Any] = outcome["facts"]
    return facts
