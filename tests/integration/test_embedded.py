"""The embedded default for real: ``backdoor-audit serve`` with SQLite, a filesystem broker and one worker."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from app import crud
from app.cli.serve import BOOTSTRAP_KEY_FILE
from app.core.db import session_scope
from app.core.settings import Settings
from tests.integration.conftest import free_port, service_env
from tests.integration.service import (
    DETECTION_CONFIG,
    Api,
    Process,
    check_detection_flow,
    python_command,
    wait_ready,
    worker_pids,
)

pytestmark = pytest.mark.slow


@dataclass
class Embedded:
    data_dir: Path
    env: dict[str, str]
    process: Process
    api: Api

    def key_for(self, team: str) -> str:
        result = subprocess.run(
            python_command("-m", "app.cli", "keys", "create", "--team", team, "--data-dir", str(self.data_dir)),
            env=self.env, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        return result.stdout.strip().splitlines()[-1]


def start_serve(data_dir: Path, env: dict[str, str], log_name: str) -> Embedded:
    port = free_port()
    command = python_command("-m", "app.cli", "serve", "--port", str(port), "--data-dir", str(data_dir))
    process = Process("serve", command, env, data_dir.parent / log_name).start()
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, [process])
    key = (data_dir / BOOTSTRAP_KEY_FILE).read_text().strip()
    return Embedded(data_dir, env, process, Api(base, key))


def _env(**extra: str) -> dict[str, str]:
    return service_env(BACKDOOR_AUDIT_DEVICE="cpu", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    data_dir = tmp_path_factory.mktemp("embedded") / "data"
    service = start_serve(data_dir, _env(BACKDOOR_AUDIT_CLASS_GROUP_SIZE="4"), "serve.log")
    try:
        yield service
    finally:
        service.process.stop()


def test_backdoored_model_flagged_and_clean_twin_passes(
    embedded: Embedded, badnets_checkpoint: Any, clean_checkpoint: Any
) -> None:
    other = Api(embedded.api.base_url, embedded.key_for("blue"))
    check_detection_flow(
        embedded.api, other, badnets_checkpoint, clean_checkpoint, [embedded.process], config=DETECTION_CONFIG
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_worker_audits_on_the_gpu(tmp_path: Path, badnets_checkpoint: Any, clean_checkpoint: Any) -> None:
    """The design's GPU worker for real: serve's Celery worker (a prefork child, so CUDA must first be
    initialised after the fork) computes the maps on CUDA, and the verdicts hold as on the CPU."""
    service = start_serve(tmp_path / "data", service_env(BACKDOOR_AUDIT_DEVICE="cuda", PYTHONUNBUFFERED="1"), "gpu.log")
    try:
        other = Api(service.api.base_url, service.key_for("blue"))
        check_detection_flow(
            service.api, other, badnets_checkpoint, clean_checkpoint, [service.process], config=DETECTION_CONFIG
        )
        with service.api.client as client:
            audits = client.get("/audits").json()["data"]
        assert len(audits) == 2 and all(str(a["device"]).startswith("cuda") for a in audits), audits
    finally:
        service.process.stop()


def _progress(api: Api, audit_id: str) -> dict[str, Any]:
    with api.client as client:
        body: dict[str, Any] = client.get(f"/audits/{audit_id}").json()
    return body


@dataclass
class Crashed:
    """An audit whose service and worker were SIGKILLed mid-task, part of its classes recorded."""

    data_dir: Path
    env: dict[str, str]
    audit_id: str
    finished: set[int]


def _crash_mid_audit(tmp_path: Path, checkpoint: Any) -> Crashed:
    data_dir = tmp_path / "data"
    env = _env(BACKDOOR_AUDIT_CLASS_GROUP_SIZE="1")  # one class per task: progress moves class by class
    first = start_serve(data_dir, env, "serve-1.log")
    uploaded = first.api.upload(checkpoint.path, arch="small_cnn", input_shape=(1, 28, 28), num_classes=10)
    config = {"saliency": {"iterations": 60, "refine_iterations": 5, "restarts": 1, "seeds_per_step": 8}}
    audit_id = first.api.submit(uploaded["id"], config)
    deadline = time.monotonic() + 300
    while _progress(first.api, audit_id)["progress"]["done"] < 3 or not _in_flight(data_dir, audit_id):
        assert time.monotonic() < deadline, first.process.tail()
        time.sleep(0.05)

    # a crash: serve and the worker die at once, mid-task, with no chance to clean up
    workers = worker_pids(data_dir)
    assert workers, "the worker process of serve was not found"
    first.process.kill_group()
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    finished = _recorded_classes(data_dir, audit_id)
    assert 3 <= len(finished) < 10, f"expected a partly finished audit, found classes {finished}"
    return Crashed(data_dir, env, audit_id, finished)


def _stop(service: Embedded) -> None:
    service.process.signal(signal.SIGTERM)
    assert service.process.wait(timeout=60) == 0, service.process.tail()
    assert worker_pids(service.data_dir) == [], "serve left its worker running after SIGTERM"


def test_killed_mid_audit_resumes_after_restart_without_recomputing_finished_classes(
    tmp_path: Path, badnets_checkpoint: Any
) -> None:
    crashed = _crash_mid_audit(tmp_path, badnets_checkpoint)
    audit_id = crashed.audit_id
    before = {k: t for k, t in _map_times(crashed.data_dir, audit_id).items() if k in crashed.finished}

    second = start_serve(crashed.data_dir, crashed.env, "serve-2.log")
    try:
        final, _ = second.api.wait_all([audit_id], [second.process])
        assert final[audit_id]["status"] == "succeeded", (final, second.process.tail())
        assert final[audit_id]["progress"] == {"done": 10, "total": 10, "fraction": 1.0}
        after = _map_times(crashed.data_dir, audit_id)
        assert len(after) == 10
        assert {k: after[k] for k in before} == before, "classes finished before the crash were recomputed"
        assert "resuming 1 unfinished audit(s)" in second.process.log.read_text()
    finally:
        _stop(second)


def test_a_class_whose_worker_keeps_dying_fails_the_audit_after_restart(
    tmp_path: Path, badnets_checkpoint: Any
) -> None:
    """With one start allowed, the class in flight at the crash fails the audit on restart: what a model
    that gets its worker OOM-killed every time sees after ``BACKDOOR_AUDIT_TASK_MAX_ATTEMPTS`` starts."""
    crashed = _crash_mid_audit(tmp_path, badnets_checkpoint)
    env = {**crashed.env, "BACKDOOR_AUDIT_TASK_MAX_ATTEMPTS": "1"}
    second = start_serve(crashed.data_dir, env, "serve-2.log")
    try:
        final, _ = second.api.wait_all([crashed.audit_id], [second.process])
        audit = final[crashed.audit_id]
        assert audit["status"] == "failed", (audit, second.process.tail())
        assert "were started 1 times without finishing" in audit["error"], audit["error"]
        assert "out of host memory" in audit["error"]
    finally:
        _stop(second)


def _in_flight(data_dir: Path, audit_id: str) -> set[int]:
    """Classes a worker has started (their attempt counted) but not yet recorded."""
    folder = data_dir / "storage" / "audits" / audit_id
    started = {int(p.name[len("attempts_") :]) for p in folder.glob("attempts_*")}
    return started - _recorded_classes(data_dir, audit_id)


def _recorded_classes(data_dir: Path, audit_id: str) -> set[int]:
    """Classes whose result row was committed: what the audit must never lose or redo."""
    with session_scope(Settings(data_dir=data_dir).database_url_resolved) as session:
        return {r.class_index for r in crud.list_class_results(session=session, audit_id=uuid.UUID(audit_id))}


def _map_times(data_dir: Path, audit_id: str) -> dict[int, int]:
    folder = data_dir / "storage" / "audits" / audit_id
    return {int(p.name[4:8]): p.stat().st_mtime_ns for p in folder.glob("map_*.safetensors")}
