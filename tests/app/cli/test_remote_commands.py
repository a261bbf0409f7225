"""``submit``/``status``/``report`` against a fake HTTP transport: argument handling, exit codes and the
one-line errors. The same commands run against a real server in tests/e2e."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.cli import remote
from app.cli.common import EXIT_CLEAN, EXIT_ERROR, EXIT_FLAGGED, CommandError
from app.client import BackdoorAuditClient
from app.reports.html import render_report_html
from tests.app.reports.conftest import make_report

AUDIT_ID = "11111111-1111-1111-1111-111111111111"
CHECKPOINT = {
    "id": "22222222-2222-2222-2222-222222222222",
    "sha256": "cd" * 32,
    "format": "safetensors",
    "num_classes": 10,
    "input_shape": [1, 28, 28],
}


def _audit(status: str, done: int = 10, **extra: Any) -> dict[str, Any]:
    return {
        "id": AUDIT_ID,
        "checkpoint_id": CHECKPOINT["id"],
        "status": status,
        "progress": {"done": done, "total": 10},
        "verdict": None,
        "probability": None,
        "suspected_classes": [],
        "error": None,
        **extra,
    }


Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Handler], None]]:
    """Route the commands' client through ``handler`` instead of the network."""
    monkeypatch.delenv(remote.API_KEY_ENV, raising=False)
    monkeypatch.delenv(remote.SERVER_ENV, raising=False)

    def install(handler: Handler) -> None:
        def factory(base_url: str, api_key: str) -> BackdoorAuditClient:
            return BackdoorAuditClient(base_url, api_key, transport=httpx.MockTransport(handler))

        monkeypatch.setattr(remote, "BackdoorAuditClient", factory)

    yield install


def _call(argv: list[str]) -> int:
    """Parse and run one command; ``CommandError`` propagates so tests can assert on its message."""
    from app.cli import report, status, submit

    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers(required=True)
    for module in (submit, status, report):
        module.register(subparsers)
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


def _run(argv: list[str]) -> int:
    try:
        return _call(argv)
    except CommandError:
        return EXIT_ERROR


def _server(final: dict[str, Any]) -> Handler:
    polls = iter([_audit("running", 3), final])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/checkpoints":
            return httpx.Response(201, json=CHECKPOINT)
        if request.url.path == "/api/v1/audits":
            return httpx.Response(202, json=_audit("queued", 0))
        return httpx.Response(200, json=next(polls))

    return handler


def _submit(tmp_path: Path, *extra: str) -> list[str]:
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"weights")
    return [
        "submit",
        str(model),
        "--server",
        "http://audit.test",
        "--api-key",
        "ba_k",
        "--input-shape",
        "1,28,28",
        "--num-classes",
        "10",
        "--wait",
        "--poll-interval",
        "0",
        *extra,
    ]


@pytest.mark.parametrize(
    ("verdict", "fail_on", "expected"),
    [
        ("clean", "suspicious", EXIT_CLEAN),
        ("suspicious", "suspicious", EXIT_FLAGGED),
        ("suspicious", "backdoored", EXIT_CLEAN),
        ("backdoored", "backdoored", EXIT_FLAGGED),
        ("backdoored", "suspicious", EXIT_FLAGGED),
    ],
)
def test_submit_wait_exit_code_follows_verdict_and_fail_on(
    serve: Callable[[Handler], None],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    verdict: str,
    fail_on: str,
    expected: int,
) -> None:
    serve(_server(_audit("succeeded", verdict=verdict, probability=0.7, suspected_classes=[3])))
    assert _run(_submit(tmp_path, "--fail-on", fail_on)) == expected
    assert f"{AUDIT_ID}: {verdict}" in capsys.readouterr().out


def test_submit_json_output_is_machine_readable(
    serve: Callable[[Handler], None], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(_server(_audit("succeeded", verdict="backdoored", probability=0.9, suspected_classes=[3])))
    assert _run(_submit(tmp_path, "--json")) == EXIT_FLAGGED
    result = json.loads(capsys.readouterr().out)
    assert result["audit"]["suspected_classes"] == [3] and result["checkpoint"]["created"] is True


@pytest.mark.parametrize("json_output", [False, True])
def test_submit_wait_gives_scans_borderline_note_on_stderr(
    serve: Callable[[Handler], None], tmp_path: Path, capsys: pytest.CaptureFixture[str], json_output: bool
) -> None:
    config = {"saliency": {"seed": 5}, "scoring": {"suspicious_at": 0.85}}
    extra = ["--json"] if json_output else []
    serve(_server(_audit("succeeded", verdict="suspicious", probability=0.88, borderline=True, config=config)))
    assert _run(_submit(tmp_path, *extra)) == EXIT_FLAGGED
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1] == (
        "note: borderline: P(backdoored)=0.88 is within one saliency seed's spread of the 0.85 threshold; "
        "rescan with saliency.seed 6 and saliency.seed 7 before relying on this verdict"
    )
    if json_output:  # stdout stays one JSON document
        assert json.loads(captured.out)["audit"]["borderline"] is True
    serve(_server(_audit("succeeded", verdict="suspicious", probability=0.99, borderline=False, config=config)))
    assert _run(_submit(tmp_path, *extra)) == EXIT_FLAGGED
    assert "borderline" not in capsys.readouterr().err


def test_status_gives_the_same_borderline_note(
    serve: Callable[[Handler], None], capsys: pytest.CaptureFixture[str]
) -> None:
    config = {"saliency": {"seed": 0}, "scoring": {"suspicious_at": 0.85}}
    status = ["status", AUDIT_ID, "--server", "http://audit.test", "--api-key", "k"]
    borderline = _audit("succeeded", verdict="clean", probability=0.7, borderline=True, config=config)
    serve(lambda request: httpx.Response(200, json=borderline))
    assert _run(status) == EXIT_CLEAN  # status reports; only submit --wait gates on the verdict
    assert capsys.readouterr().err.splitlines()[-1] == (
        "note: borderline: P(backdoored)=0.70 is within one saliency seed's spread of the 0.85 threshold; "
        "rescan with saliency.seed 1 and saliency.seed 2 before relying on this verdict"
    )
    far = _audit("succeeded", verdict="clean", probability=0.01, borderline=False, config=config)
    serve(lambda request: httpx.Response(200, json=far))
    assert _run([*status, "--json"]) == EXIT_CLEAN
    assert "borderline" not in capsys.readouterr().err


def test_submit_sends_the_parsed_shape_and_a_json_files_config(
    serve: Callable[[Handler], None], tmp_path: Path
) -> None:
    config = tmp_path / "audit.json"
    config.write_text('{"saliency": {"seed": 1}}')
    sent: dict[str, bytes] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        sent[request.url.path] = request.read()
        if request.url.path == "/api/v1/checkpoints":
            return httpx.Response(201, json=CHECKPOINT)
        return httpx.Response(202, json=_audit("queued", 0))

    serve(handler)
    argv = [arg for arg in _submit(tmp_path, "--config", str(config)) if arg != "--wait"]
    assert _run(argv) == EXIT_CLEAN
    assert b'name="input_shape"\r\n\r\n[1, 28, 28]\r\n' in sent["/api/v1/checkpoints"]
    assert json.loads(sent["/api/v1/audits"])["config"] == {"saliency": {"seed": 1}}


def test_failed_audit_and_refused_key_are_errors(serve: Callable[[Handler], None], tmp_path: Path) -> None:
    serve(_server(_audit("failed", error="worker crashed")))
    with pytest.raises(CommandError, match="failed on the server: worker crashed"):
        _call(_submit(tmp_path))
    serve(lambda request: httpx.Response(401, json={"detail": "missing or unknown API key"}))
    with pytest.raises(CommandError, match="the server refused the API key"):
        _call(_submit(tmp_path))


def test_missing_server_or_key_names_the_environment_variables(
    tmp_path: Path, serve: Callable[[Handler], None]
) -> None:
    argv = _submit(tmp_path)
    without_key = argv[: argv.index("--api-key")] + argv[argv.index("--api-key") + 2 :]
    with pytest.raises(CommandError, match=remote.API_KEY_ENV):
        _call(without_key)
    without_server = argv[: argv.index("--server")] + argv[argv.index("--server") + 2 :]
    with pytest.raises(CommandError, match=remote.SERVER_ENV):
        _call(without_server)


def test_status_prints_progress_and_unknown_id_is_an_error(
    serve: Callable[[Handler], None], capsys: pytest.CaptureFixture[str]
) -> None:
    serve(lambda request: httpx.Response(200, json=_audit("running", 4)))
    assert _run(["status", AUDIT_ID, "--server", "http://audit.test", "--api-key", "k"]) == EXIT_CLEAN
    assert "running (4/10 classes)" in capsys.readouterr().out
    serve(lambda request: httpx.Response(404, json={"detail": f"audit {AUDIT_ID} not found"}))
    with pytest.raises(CommandError, match="not found"):
        _call(["status", AUDIT_ID, "--server", "http://audit.test", "--api-key", "k"])


@pytest.mark.parametrize("fmt", ["json", "sarif", "html", "pdf"])
def test_report_writes_each_format_to_a_file(serve: Callable[[Handler], None], tmp_path: Path, fmt: str) -> None:
    if fmt == "pdf":
        pytest.importorskip("weasyprint")
    report, images = make_report(suspected=(3,))

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(".html"):
            return httpx.Response(200, text=render_report_html(report, images))
        return httpx.Response(200, json=report)

    serve(handler)
    out = tmp_path / f"report.{fmt}"
    argv = ["report", AUDIT_ID, "--format", fmt, "-o", str(out), "--server", "http://audit.test"]
    assert _run([*argv, "--api-key", "k", "--artifact-uri", "models/m.safetensors"]) == EXIT_CLEAN
    if fmt == "pdf":
        assert out.read_bytes().startswith(b"%PDF-")
        return
    text = out.read_text()
    if fmt == "html":
        assert text.startswith("<!DOCTYPE html>")
    elif fmt == "sarif":
        result = json.loads(text)["runs"][0]["results"][0]
        assert result["properties"]["class_index"] == 3
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "models/m.safetensors"
    else:
        assert json.loads(text)["verdict"] == "backdoored"


def test_pdf_to_stdout_is_refused(serve: Callable[[Handler], None]) -> None:
    serve(lambda request: httpx.Response(500))
    with pytest.raises(CommandError, match="-o FILE"):
        _call(["report", AUDIT_ID, "--format", "pdf", "--server", "http://audit.test", "--api-key", "k"])
