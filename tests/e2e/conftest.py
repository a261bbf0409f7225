"""A real ``backdoor-audit serve`` (embedded mode: SQLite, filesystem broker, one worker process) on a
free port with a temporary data directory, shared by the end-to-end tests of one run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.cli.serve import BOOTSTRAP_KEY_FILE

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class LiveServer:
    url: str
    api_key: str
    data_dir: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"backdoor-audit serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(
        f"backdoor-audit serve did not answer within {START_TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}"
    )


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("serve-data")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BACKDOOR_AUDIT_DEVICE": "cpu", "PYTHONUNBUFFERED": "1"}
    for name in ("DATABASE_URL", "BROKER_URL", "STORAGE_DIR", "RESULT_BACKEND"):
        env.pop(name, None)
        env.pop(f"BACKDOOR_AUDIT_{name}", None)
    log = data_dir / "serve.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)],
            cwd=REPO,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_up(url, process, log)
        api_key = (data_dir / BOOTSTRAP_KEY_FILE).read_text().strip()
        yield LiveServer(url=url, api_key=api_key, data_dir=data_dir)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
