# syntax=docker/dockerfile:1
# Two images from one file:
#   api    - FastAPI + migrations + CLI, no torch (checkpoint validation goes to the `cpu` workers)
#   worker - the same code plus CUDA torch, for `celery -A worker.celery_app worker`
# No secret is baked in: everything comes from the environment at run time (see docker-compose.yml).
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BACKDOOR_AUDIT_DATA_DIR=/data
RUN useradd --create-home --uid 10001 audit \
    && mkdir -p /data \
    && chown audit /data
WORKDIR /srv/backdoor-audit

# Source only: tests, caches and local data stay out (.dockerignore).
FROM base AS source
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations

FROM source AS api
RUN pip install ".[postgres]"
# The API image has no torch, so uploads are validated by a worker on the `cpu` queue.
ENV BACKDOOR_AUDIT_CHECKPOINT_VALIDATION=queue
USER audit
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]

FROM source AS worker
# CUDA wheels carry their own CUDA runtime; the host needs only the NVIDIA driver and container toolkit.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu124
RUN pip install --index-url "${TORCH_INDEX_URL}" torch torchvision \
    && pip install ".[postgres,worker]"
USER audit
CMD ["celery", "-A", "worker.celery_app", "worker", "-Q", "gpu", "-c", "1", "--loglevel", "INFO"]
