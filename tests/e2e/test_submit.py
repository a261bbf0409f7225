"""``backdoor-audit submit --wait`` against a real server: the exit codes a CI gate relies on.

The verdict tests use the default audit config: the cheap test config is too coarse to find the
BadNets trigger (measured: the backdoored example came out clean with it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FAST_AUDIT_CONFIG
from tests.e2e.conftest import REPO, LiveServer
from worker.examples import ExampleModel

pytestmark = pytest.mark.slow


def _submit(
    server: LiveServer, model: ExampleModel, *extra: str, api_key: str | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BACKDOOR_AUDIT_API_KEY": api_key or server.api_key, "OMP_NUM_THREADS": "1"}
    env.pop("BACKDOOR_AUDIT_SERVER", None)
    command = [sys.executable, "-m", "app.cli", "submit", *model.cli_args(), "--server", server.url]
    command += ["--poll-interval", "0.5", *extra]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def flagged_submit(live_server: LiveServer, badnets_checkpoint: ExampleModel) -> subprocess.CompletedProcess[str]:
    """One audit of the BadNets model, shared by the tests that read it (an audit costs CPU minutes)."""
    return _submit(live_server, badnets_checkpoint, "--wait", "--json")


def test_backdoored_model_exits_1_with_its_target_named(
    flagged_submit: subprocess.CompletedProcess[str], badnets_checkpoint: ExampleModel
) -> None:
    result = flagged_submit
    assert result.returncode == 1, result.stderr
    audit = json.loads(result.stdout)["audit"]
    assert audit["status"] == "succeeded" and audit["verdict"] in ("suspicious", "backdoored")
    assert audit["suspected_classes"][0] == badnets_checkpoint.target_class


def test_clean_twin_exits_0(live_server: LiveServer, clean_checkpoint: ExampleModel) -> None:
    result = _submit(live_server, clean_checkpoint, "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    assert ": clean" in result.stdout


def test_bad_key_exits_2_with_one_clear_line(live_server: LiveServer, clean_checkpoint: ExampleModel) -> None:
    fast = json.dumps(FAST_AUDIT_CONFIG)
    result = _submit(
        live_server, clean_checkpoint, "--wait", "--config", fast, api_key="ba_not-a-real-key", timeout=120
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the server refused the API key")
    assert result.stdout == ""


def test_status_and_report_commands_read_the_finished_audit(
    live_server: LiveServer,
    flagged_submit: subprocess.CompletedProcess[str],
    badnets_checkpoint: ExampleModel,
    tmp_path: Path,
) -> None:
    audit_id = json.loads(flagged_submit.stdout)["audit"]["id"]
    env = {**os.environ, "BACKDOOR_AUDIT_API_KEY": live_server.api_key, "BACKDOOR_AUDIT_SERVER": live_server.url}
    status = subprocess.run(
        [sys.executable, "-m", "app.cli", "status", audit_id],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0 and f"audit {audit_id}: " in status.stdout
    sarif_path = tmp_path / "audit.sarif"
    report = subprocess.run(
        [sys.executable, "-m", "app.cli", "report", audit_id, "--format", "sarif", "-o", str(sarif_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    results = json.loads(sarif_path.read_text())["runs"][0]["results"]
    assert results[0]["properties"]["class_index"] == badnets_checkpoint.target_class
