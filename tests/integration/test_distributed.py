"""The distributed deployment for real: Postgres, Redis, a Celery worker process and a uvicorn server."""

from __future__ import annotations

import random
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from sqlalchemy import update

from app import crud
from app.core.db import session_scope
from app.core.queue import REAP_STALLED_AUDITS
from app.core.settings import Settings
from app.models import Audit, Checkpoint, utcnow
from tests.integration.conftest import free_port, service_env
from tests.integration.service import DETECTION_CONFIG, Api, Process, check_detection_flow, python_command, wait_ready

pytestmark = pytest.mark.slow
REDIS_URL = "redis://127.0.0.1:6379"


@dataclass
class Stack:
    red: Api
    blue: Api
    processes: list[Process]
    env: dict[str, str]


def _create_key(env: dict[str, str], team: str) -> str:
    result = subprocess.run(
        python_command("-m", "app.cli", "keys", "create", "--team", team),
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def stack(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    root = tmp_path_factory.mktemp("distributed")
    env = service_env(
        DATABASE_URL=postgres_url,
        # a random database number keeps concurrent test runs from consuming each other's tasks
        BROKER_URL=f"{REDIS_URL}/{random.randint(1, 15)}",
        STORAGE_DIR=str(root / "storage"),
        BACKDOOR_AUDIT_DATA_DIR=str(root / "data"),
        BACKDOOR_AUDIT_CHECKPOINT_VALIDATION="queue",  # as in the torch-free API image
        BACKDOOR_AUDIT_CLASS_GROUP_SIZE="4",  # 10 classes -> a chord of 3 groups
        BACKDOOR_AUDIT_DEVICE="cpu",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    subprocess.run(python_command("-m", "app.cli", "migrate"), env=env, check=True, timeout=120, capture_output=True)
    red, blue = _create_key(env, "red"), _create_key(env, "blue")
    port = free_port()
    worker = Process(
        "worker",
        python_command("-m", "celery", "-A", "worker.celery_app", "worker", "-Q", "gpu,cpu", "-c", "1", "-l", "INFO"),
        env, root / "worker.log",
    )  # fmt: skip
    api = Process(
        "api",
        python_command("-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)),
        env, root / "api.log",
    )  # fmt: skip
    processes = [worker.start(), api.start()]
    try:
        wait_ready(f"http://127.0.0.1:{port}", processes)
        base = f"http://127.0.0.1:{port}"
        yield Stack(Api(base, red), Api(base, blue), processes, env)
    finally:
        for process in processes:
            process.stop()


def test_backdoored_model_flagged_and_clean_twin_passes(
    stack: Stack, badnets_checkpoint: Any, clean_checkpoint: Any
) -> None:
    check_detection_flow(
        stack.red, stack.blue, badnets_checkpoint, clean_checkpoint, stack.processes, config=DETECTION_CONFIG
    )


def test_hostile_upload_is_refused_by_the_cpu_worker(stack: Stack, tmp_path: Path) -> None:
    """With queue validation the worker runs intake; its refusal still reaches the client as a 422."""
    hostile = tmp_path / "model.pt"
    hostile.write_bytes(b"\x80\x04\x95\x15\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94.")
    with stack.red.client as client, hostile.open("rb") as handle:
        response = client.post(
            "/checkpoints",
            data={"input_shape": "1,28,28", "num_classes": "10", "arch": "small_cnn"},
            files={"file": ("model.pt", handle)},
        )
    assert response.status_code == 422, response.text
    assert "system" in response.json()["detail"]


def test_two_audits_of_the_same_checkpoint_run_side_by_side(stack: Stack, badnets_checkpoint: Any) -> None:
    checkpoint = stack.red.upload(badnets_checkpoint.path, arch="small_cnn", input_shape=(1, 28, 28), num_classes=10)
    config = {"saliency": {"iterations": 20, "refine_iterations": 5, "restarts": 1, "seeds_per_step": 8}}
    audit_ids = [stack.red.submit(checkpoint["id"], config) for _ in range(2)]
    final, slowest_poll = stack.red.wait_all(audit_ids, stack.processes)
    first, second = (final[a] for a in audit_ids)
    assert first["status"] == second["status"] == "succeeded", (first, second)
    # same model, same seeded config: the same answer, from two independent sets of results
    assert (first["verdict"], first["suspected_classes"]) == (second["verdict"], second["suspected_classes"])
    assert slowest_poll < 1.0


def test_an_audit_whose_message_was_lost_is_sent_again_by_the_reaper(stack: Stack, badnets_checkpoint: Any) -> None:
    """An audit recorded a day ago whose orchestration message never reached a worker (as after a broker
    that lost its data) sits queued until the reaper, run as the beat runs it, sends it again."""
    checkpoint = stack.red.upload(badnets_checkpoint.path, arch="small_cnn", input_shape=(1, 28, 28), num_classes=10)
    config = {"saliency": {"iterations": 20, "refine_iterations": 5, "restarts": 1, "seeds_per_step": 8}}
    database = stack.env["DATABASE_URL"]
    with session_scope(database) as session:
        stored = session.get(Checkpoint, uuid.UUID(checkpoint["id"]))
        assert stored is not None
        audit = crud.create_audit(session=session, team_id=stored.team_id, checkpoint=stored, config=config)
        session.flush()
        session.execute(update(Audit).where(Audit.id == audit.id).values(created_at=utcnow() - timedelta(days=1)))
        audit_id = audit.id
    time.sleep(3)  # an idle worker would have picked up a message by now
    with stack.red.client as client:
        assert client.get(f"/audits/{audit_id}").json()["status"] == "queued"
    Celery(broker=stack.env["BROKER_URL"]).send_task(REAP_STALLED_AUDITS, queue="cpu")
    final, _ = stack.red.wait_all([str(audit_id)], stack.processes)
    assert final[str(audit_id)]["status"] == "succeeded", final
    with session_scope(database) as session:
        reaped = session.get(Audit, audit_id)
        assert reaped is not None and reaped.requeued_at is not None
        # sent once: now that it has moved, it is not stalled any more
        idle_since = utcnow() - timedelta(seconds=Settings().stall_timeout_resolved)
        assert audit_id not in crud.list_stalled_audit_ids(session=session, idle_since=idle_since)
