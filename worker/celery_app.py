"""The Celery app of the workers: ``celery -A worker.celery_app worker -Q gpu,cpu -c 1``.

Configuration is shared with the API's client (``app.core.queue.make_celery``) so both sides agree on
queues, serializers, time limits and broker options; settings come from the same environment.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init

from app.core.db import dispose_engines
from app.core.queue import make_celery
from app.core.settings import get_settings
from worker.allocator import retain_freed_memory

celery_app = make_celery(get_settings())
celery_app.conf.include = ["worker.tasks"]


@worker_process_init.connect
def _prepare_pool_child(**_kwargs: Any) -> None:
    # A forked pool child must not reuse the parent's pooled database sockets.
    dispose_engines()
    # It audits on the CPU when no GPU is given: keep its freed activation buffers (worker/allocator.py).
    retain_freed_memory()
