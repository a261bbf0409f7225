"""Unit tests of the client's HTTP mapping against a fake transport (the client is a thin layer; the
real-server flow is covered in tests/e2e)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.client import (
    ApiError,
    Audit,
    AuthenticationError,
    BackdoorAuditClient,
    BackdoorAuditError,
    NotFoundError,
    ServerUnreachableError,
    WaitTimeoutError,
)
from tests.app.reports.conftest import make_report

AUDIT_ID = "11111111-1111-1111-1111-111111111111"
CHECKPOINT_ID = "22222222-2222-2222-2222-222222222222"


def _audit(status: str, done: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "id": AUDIT_ID,
        "checkpoint_id": CHECKPOINT_ID,
        "status": status,
        "progress": {"done": done, "total": 10},
        "verdict": None,
        "probability": None,
        "suspected_classes": None,
        "error": None,
        **extra,
    }


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> BackdoorAuditClient:
    return BackdoorAuditClient("http://audit.test/", "ba_key", transport=httpx.MockTransport(handler))


def test_upload_sends_bearer_key_file_and_json_list_fields(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["url"] = str(request.url)
        seen["auth"] = request.headers["authorization"]
        seen["body"] = request.read()
        body = {
            "id": CHECKPOINT_ID,
            "sha256": "ab" * 32,
            "format": "safetensors",
            "num_classes": 10,
            "input_shape": [1, 28, 28],
            "arch": "small_cnn",
            "name": None,
            "size_bytes": 5,
        }
        return httpx.Response(201, json=body)

    model = tmp_path / "model.safetensors"
    model.write_bytes(b"WEIGHTS")
    with _client(handler) as client:
        checkpoint = client.upload_checkpoint(
            model, input_shape=(1, 28, 28), num_classes=10, arch="small_cnn", class_names=["a,b", "c"]
        )
    assert seen["url"] == "http://audit.test/api/v1/checkpoints"
    assert seen["auth"] == "Bearer ba_key"
    assert b"WEIGHTS" in seen["body"] and b'filename="model.safetensors"' in seen["body"]
    assert b"[1, 28, 28]" in seen["body"] and b'["a,b", "c"]' in seen["body"]
    assert b'name="mean"' not in seen["body"]  # unset options are not sent
    assert checkpoint.id == CHECKPOINT_ID and checkpoint.created is True


def test_reupload_of_same_bytes_is_reported_as_not_created(tmp_path: Path) -> None:
    body = {"id": CHECKPOINT_ID, "sha256": "ab" * 32, "num_classes": 10, "input_shape": [1, 28, 28]}
    model = tmp_path / "m.pt"
    model.write_bytes(b"x")
    with _client(lambda request: httpx.Response(200, json=body)) as client:
        assert client.upload_checkpoint(model, input_shape=(1, 28, 28), num_classes=10).created is False


def test_missing_file_is_a_clear_error() -> None:
    with (
        _client(lambda request: httpx.Response(500)) as client,
        pytest.raises(BackdoorAuditError, match="not found"),
    ):
        client.upload_checkpoint("/nonexistent/model.pt", input_shape=(1, 28, 28), num_classes=10)


def test_create_audit_posts_checkpoint_and_config() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/audits"
        assert json.loads(request.read()) == {
            "checkpoint_id": CHECKPOINT_ID,
            "config": {"saliency": {"iterations": 20}},
        }
        return httpx.Response(202, json=_audit("queued"))

    with _client(handler) as client:
        audit = client.create_audit(CHECKPOINT_ID, {"saliency": {"iterations": 20}})
    assert audit.status == "queued" and audit.total == 10 and not audit.finished


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (401, {"detail": "missing or unknown API key"}, AuthenticationError, "unknown API key"),
        (404, {"detail": "audit x not found"}, NotFoundError, "not found"),
        (
            422,
            {"detail": [{"loc": ["body", "config", "saliency"], "msg": "extra fields not permitted"}]},
            ApiError,
            "config.saliency: extra fields not permitted",
        ),
        (500, None, ApiError, "HTTP 500"),
    ],
)
def test_error_statuses_map_to_typed_errors_with_the_server_message(
    status: int, body: Any, error: type[Exception], text: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body) if body is not None else httpx.Response(status, text="boom")

    with _client(handler) as client, pytest.raises(error, match=text) as raised:
        client.get_audit(AUDIT_ID)
    assert isinstance(raised.value, ApiError) and raised.value.status == status


def test_unreachable_server_is_its_own_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with _client(handler) as client, pytest.raises(ServerUnreachableError, match="cannot reach"):
        client.get_audit(AUDIT_ID)


def test_wait_polls_until_finished_and_reports_progress() -> None:
    states = iter(
        [
            _audit("queued"),
            _audit("running", 4),
            _audit("running", 9),
            _audit("succeeded", 10, verdict="backdoored", probability=0.9, suspected_classes=[3]),
        ]
    )
    with _client(lambda request: httpx.Response(200, json=next(states))) as client:
        seen: list[tuple[str, int]] = []
        audit = client.wait(AUDIT_ID, poll_interval=0.0, on_progress=lambda a: seen.append((a.status, a.done)))
    assert seen == [("queued", 0), ("running", 4), ("running", 9), ("succeeded", 10)]
    assert audit.verdict == "backdoored" and audit.suspected_classes == [3]


def test_wait_times_out_with_a_hint() -> None:
    with (
        _client(lambda request: httpx.Response(200, json=_audit("running", 2))) as client,
        pytest.raises(WaitTimeoutError, match="backdoor-audit status"),
    ):
        client.wait(AUDIT_ID, poll_interval=0.01, timeout=0.05)


def test_reports_in_each_format() -> None:
    report, _ = make_report(suspected=(3,))

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/report.html"):
            return httpx.Response(200, text="<html>report</html>")
        assert request.url.path == f"/api/v1/audits/{AUDIT_ID}/report"
        return httpx.Response(200, json=report)

    with _client(handler) as client:
        assert client.get_report(AUDIT_ID, "json")["suspected_classes"] == [3]
        assert client.get_report(AUDIT_ID, "html") == "<html>report</html>"
        sarif = client.get_report(AUDIT_ID, "sarif")
    assert sarif["version"] == "2.1.0"
    assert [r["properties"]["class_index"] for r in sarif["runs"][0]["results"]] == [3]


def test_bad_server_url_and_empty_key_are_refused_early() -> None:
    with pytest.raises(BackdoorAuditError, match="http://"):
        BackdoorAuditClient("audit.test:8000", "k")
    with pytest.raises(AuthenticationError):
        BackdoorAuditClient("http://audit.test", "")


def test_wait_rides_out_a_few_failed_polls_but_not_many() -> None:
    answers = iter(
        [
            httpx.Response(200, json=_audit("running", 2)),
            httpx.Response(502, text="bad gateway"),
            httpx.Response(503, json={"detail": "restarting"}),
            httpx.Response(200, json=_audit("succeeded", 10, verdict="clean", probability=0.01)),
        ]
    )
    with _client(lambda request: next(answers)) as client:
        assert client.wait(AUDIT_ID, poll_interval=0.0).verdict == "clean"

    with (
        _client(lambda request: httpx.Response(503, json={"detail": "down"})) as client,
        pytest.raises(ApiError, match="down"),
    ):
        client.wait(AUDIT_ID, poll_interval=0.0, max_poll_failures=3)


def test_wait_does_not_retry_client_errors() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(404, json={"detail": "audit not found"})

    with _client(handler) as client, pytest.raises(NotFoundError):
        client.wait(AUDIT_ID, poll_interval=0.0)
    assert len(calls) == 1


def test_progress_fraction_is_read_and_falls_back_to_whole_classes() -> None:
    moving = Audit.from_json(_audit("running", 3, progress={"done": 3, "total": 10, "fraction": 0.42}))
    assert (moving.done, moving.fraction) == (3, 0.42)
    assert Audit.from_json(_audit("running", 3)).fraction == 0.3  # a server that does not send it


def test_list_audits_sends_the_borderline_filter_and_reads_the_field() -> None:
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.url.params))
        config = {"saliency": {"seed": 4}, "scoring": {"suspicious_at": 0.85}}
        body = _audit("succeeded", 10, verdict="suspicious", probability=0.88, borderline=True, config=config)
        return httpx.Response(200, json={"data": [body], "count": 1})

    with _client(handler) as client:
        audits, count = client.list_audits(verdict="suspicious", borderline=True)
        client.list_audits(borderline=False)  # a filter, not "no filter"
        client.list_audits()
    assert seen == [
        {"skip": "0", "limit": "100", "verdict": "suspicious", "borderline": "true"},
        {"skip": "0", "limit": "100", "borderline": "false"},
        {"skip": "0", "limit": "100"},
    ]
    assert count == 1 and audits[0].borderline is True and audits[0].config["saliency"]["seed"] == 4
    older = Audit.from_json(_audit("succeeded", 10))  # a server from before the field
    assert older.borderline is None and older.config == {}
