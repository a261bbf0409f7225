"""Helpers for driving real service processes from tests: start, wait until ready, stop, poll audits."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
FINISHED = {"succeeded", "failed"}


@dataclass
class Process:
    """A child process in its own process group, its output in a log file for failure messages."""

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> Process:
        handle = self.log.open("ab")
        self.popen = subprocess.Popen(
            self.command, cwd=REPO, env=self.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} log ---\n" + "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        assert self.popen is not None
        self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.popen is not None
        return self.popen.wait(timeout=timeout)

    def kill_group(self) -> None:
        """SIGKILL the process and everything it started (simulates a crash or a lost machine)."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self) -> None:
        if self.alive():
            self.signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.wait(timeout=30)
        self.kill_group()


def python_command(*args: str) -> list[str]:
    return [sys.executable, *args]


def wait_ready(base_url: str, processes: list[Process], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            if not process.alive():
                raise AssertionError(f"{process.name} exited early\n{process.tail()}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("service not ready in time\n" + "\n".join(p.tail() for p in processes))


@dataclass
class Api:
    base_url: str
    key: str

    @property
    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.base_url}/api/v1", headers={"Authorization": f"Bearer {self.key}"}, timeout=60
        )

    def upload(self, path: Path, *, arch: str, input_shape: tuple[int, ...], num_classes: int) -> dict[str, Any]:
        with self.client as client, path.open("rb") as handle:
            response = client.post(
                "/checkpoints",
                data={"arch": arch, "input_shape": ",".join(map(str, input_shape)), "num_classes": str(num_classes)},
                files={"file": (path.name, handle, "application/octet-stream")},
            )
        assert response.status_code in (200, 201), response.text
        body: dict[str, Any] = response.json()
        return body

    def submit(self, checkpoint_id: str, config: dict[str, Any]) -> str:
        with self.client as client:
            response = client.post("/audits", json={"checkpoint_id": checkpoint_id, "config": config})
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def wait_all(
        self, audit_ids: list[str], processes: list[Process], timeout: float = 600.0
    ) -> tuple[dict[str, dict[str, Any]], float]:
        """Poll until every audit finished; returns the final bodies and the slowest poll in seconds."""
        deadline = time.monotonic() + timeout
        slowest = 0.0
        final: dict[str, dict[str, Any]] = {}
        with self.client as client:
            while len(final) < len(audit_ids):
                assert time.monotonic() < deadline, "audits did not finish in time\n" + "\n".join(
                    p.tail() for p in processes
                )
                for audit_id in audit_ids:
                    if audit_id in final:
                        continue
                    started = time.perf_counter()
                    body = client.get(f"/audits/{audit_id}").json()
                    slowest = max(slowest, time.perf_counter() - started)
                    if body["status"] in FINISHED:
                        final[audit_id] = body
                time.sleep(0.5)
        return final, slowest


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# The default engine: the flow asserts the verdict a user gets. One restart (half the cost) was not
# enough: the fixture is retrained per machine and training is not bit-identical, and on one machine
# one restart gave the BadNets model P(backdoored) 0.842, under the 0.85 line, where two restarts gave
# 0.993 (its clean twin 0.019).
DETECTION_CONFIG: dict[str, Any] = {}


def check_detection_flow(
    api: Api, other_team: Api, backdoored: Any, clean: Any, processes: list[Process], config: dict[str, Any]
) -> None:
    """The issue's acceptance flow: upload a BadNets model and its clean twin, audit both at once, read
    verdicts, reports and maps; the backdoored one is flagged with its target first, the clean one is not."""
    declared = {"arch": backdoored.arch, "input_shape": backdoored.input_shape, "num_classes": backdoored.num_classes}
    checkpoints = [api.upload(backdoored.path, **declared), api.upload(clean.path, **declared)]
    audit_ids = [api.submit(c["id"], config) for c in checkpoints]  # both queued before either finishes
    final, slowest_poll = api.wait_all(audit_ids, processes)
    for audit_id in audit_ids:
        assert final[audit_id]["status"] == "succeeded", (final[audit_id], *[p.tail() for p in processes])
    assert slowest_poll < 1.0, f"a status poll took {slowest_poll:.2f} s while audits ran"

    flagged, passed = final[audit_ids[0]], final[audit_ids[1]]
    assert flagged["verdict"] in {"suspicious", "backdoored"}, flagged
    assert flagged["suspected_classes"][0] == backdoored.target_class, flagged
    assert passed["verdict"] == "clean" and passed["suspected_classes"] == [], passed
    assert flagged["progress"] == {"done": backdoored.num_classes, "total": backdoored.num_classes, "fraction": 1.0}

    target = backdoored.target_class
    with api.client as client:
        report = client.get(f"/audits/{audit_ids[0]}/report").json()
        assert report["verdict"] == flagged["verdict"] and report["model"]["sha256"] == checkpoints[0]["sha256"]
        assert flagged["borderline"] is not None and flagged["borderline"] == report["borderline"], flagged
        assert [c["class_index"] for c in report["classes"]] == list(range(backdoored.num_classes))
        for image in ("map", "heatmap", "trigger"):
            response = client.get(f"/audits/{audit_ids[0]}/classes/{target}/{image}.png")
            assert response.status_code == 200 and response.content.startswith(PNG_MAGIC), image
        html = client.get(f"/audits/{audit_ids[0]}/report.html")
        assert html.status_code == 200 and "data:image/png;base64," in html.text
        listed = client.get("/audits", params={"verdict": "clean"}).json()
        assert audit_ids[1] in [a["id"] for a in listed["data"]]
    with other_team.client as client:
        assert client.get(f"/audits/{audit_ids[0]}").status_code == 404
        assert client.get(f"/checkpoints/{checkpoints[0]['id']}").status_code == 404


def worker_pids(data_dir: Path) -> list[int]:
    """Celery worker processes started for ``data_dir`` (found through /proc, Linux only)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"celery" in cmdline and f"BACKDOOR_AUDIT_DATA_DIR={data_dir}\0".encode() in environ:
            found.append(int(proc.name))
    return found
