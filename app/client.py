"""A small typed client for the backdoor-audit REST API, for MLOps pipelines and the ``submit`` command.

    from app.client import BackdoorAuditClient

    with BackdoorAuditClient("http://audits.internal:8000", api_key) as client:
        checkpoint = client.upload_checkpoint("model.safetensors", input_shape=(1, 28, 28), num_classes=10,
                                              arch="small_cnn")
        audit = client.wait(client.create_audit(checkpoint.id).id)
        if audit.verdict != "clean": ...

It depends on httpx only (no torch, no database), so a CI job can import it cheaply. Every failure is a
``BackdoorAuditError`` whose message says what went wrong and what to do.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, overload

import httpx

API_PREFIX = "/api/v1"
ReportFormat = Literal["json", "html", "sarif"]
FINISHED = frozenset({"succeeded", "failed"})


class BackdoorAuditError(Exception):
    """Base of every error this client raises."""


class ApiError(BackdoorAuditError):
    """The server answered with an error status; ``message`` is its explanation."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class AuthenticationError(ApiError):
    """401/403: the API key is missing, unknown or revoked."""


class NotFoundError(ApiError):
    """404: no such id for this team (another team's ids also answer 404)."""


class ServerUnreachableError(BackdoorAuditError):
    """No HTTP answer at all: wrong URL, server down, network or TLS failure."""


class WaitTimeoutError(BackdoorAuditError):
    """``wait`` gave up before the audit finished; the audit itself keeps running on the server."""


@dataclass(frozen=True)
class Checkpoint:
    id: str
    sha256: str
    format: str
    num_classes: int
    input_shape: list[int]
    arch: str | None
    name: str | None
    size_bytes: int
    created: bool  # False when the same bytes were already uploaded (the server answered 200, not 201)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, created: bool) -> Checkpoint:
        return cls(
            id=str(data["id"]),
            sha256=str(data["sha256"]),
            format=str(data.get("format", "")),
            num_classes=int(data["num_classes"]),
            input_shape=[int(v) for v in data.get("input_shape") or []],
            arch=data.get("arch"),
            name=data.get("name"),
            size_bytes=int(data.get("size_bytes") or 0),
            created=created,
        )


@dataclass(frozen=True)
class Audit:
    id: str
    checkpoint_id: str | None
    status: str  # queued | running | succeeded | failed
    done: int
    total: int
    fraction: float  # of the map computation, counting the steps of the classes in flight
    verdict: str | None  # clean | suspicious | backdoored, once succeeded
    probability: float | None
    borderline: bool | None  # another saliency seed could turn the verdict; None unfinished or unknown
    suspected_classes: list[int]
    error: str | None
    config: dict[str, Any]  # the server's whole config of the audit, defaults filled in

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Audit:
        progress = data.get("progress") or {}
        checkpoint_id = data.get("checkpoint_id")
        done, total = int(progress.get("done") or 0), int(progress.get("total") or 0)
        fraction = progress.get("fraction")  # absent from servers before it was added: whole classes only
        return cls(
            id=str(data["id"]),
            checkpoint_id=str(checkpoint_id) if checkpoint_id else None,
            status=str(data["status"]),
            done=done,
            total=total,
            fraction=float(fraction) if fraction is not None else (done / total if total else 0.0),
            verdict=data.get("verdict"),
            probability=data.get("probability"),
            borderline=data.get("borderline"),  # absent from servers before it was added
            suspected_classes=[int(k) for k in data.get("suspected_classes") or []],
            error=data.get("error"),
            config=dict(data.get("config") or {}),
        )


def _error_message(response: httpx.Response) -> str:
    """FastAPI's ``{"detail": ...}`` as one line (validation errors list each field and its problem)."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, Mapping):
                where = ".".join(str(p) for p in item.get("loc", []) if p not in ("body", "query", "path"))
                parts.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
        return "; ".join(parts) or response.reason_phrase
    return str(detail) if detail else response.reason_phrase


def _list_field(values: Sequence[Any] | None) -> str | None:
    # JSON lists, not comma lists: class names may contain commas
    return json.dumps(list(values)) if values is not None else None


class BackdoorAuditClient:
    """Talks to one backdoor-audit server with one API key. Use as a context manager or call ``close``."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        upload_timeout: float = 600.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise BackdoorAuditError(
                f"server URL {base_url!r} must start with http:// or https:// (e.g. http://127.0.0.1:8000)"
            )
        if not api_key:
            raise AuthenticationError(401, "no API key given; create one with 'backdoor-audit keys create'")
        self.base_url = base_url.rstrip("/")
        self.upload_timeout = upload_timeout
        self._http = httpx.Client(
            base_url=self.base_url + API_PREFIX,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "backdoor-audit-client"},
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> BackdoorAuditClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ServerUnreachableError(
                f"the server at {self.base_url} did not answer {method} {path} in time ({exc})"
            ) from exc
        except httpx.TransportError as exc:
            raise ServerUnreachableError(
                f"cannot reach the server at {self.base_url} ({exc}); check the URL and that it is running"
            ) from exc
        if response.status_code in (401, 403):
            raise AuthenticationError(response.status_code, _error_message(response))
        if response.status_code == 404:
            raise NotFoundError(404, _error_message(response))
        if response.status_code >= 400:
            raise ApiError(response.status_code, _error_message(response))
        return response

    def upload_checkpoint(
        self,
        path: str | Path,
        *,
        input_shape: Sequence[int],
        num_classes: int,
        arch: str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        name: str | None = None,
        class_names: Sequence[str] | None = None,
    ) -> Checkpoint:
        """Upload a checkpoint file (streamed). The same bytes again return the existing checkpoint."""
        path = Path(path)
        if not path.is_file():
            raise BackdoorAuditError(f"checkpoint file {str(path)!r} not found or not a file")
        form = {
            "input_shape": _list_field(input_shape),
            "num_classes": str(num_classes),
            "arch": arch,
            "mean": _list_field(mean),
            "std": _list_field(std),
            "name": name,
            "class_names": _list_field(class_names),
        }
        with path.open("rb") as handle:
            response = self._request(
                "POST",
                "/checkpoints",
                data={key: value for key, value in form.items() if value is not None},
                files={"file": (path.name, handle, "application/octet-stream")},
                timeout=self.upload_timeout,
            )
        return Checkpoint.from_json(response.json(), created=response.status_code == 201)

    def create_audit(self, checkpoint_id: str, config: Mapping[str, Any] | None = None) -> Audit:
        body = {"checkpoint_id": str(checkpoint_id), "config": dict(config or {})}
        return Audit.from_json(self._request("POST", "/audits", json=body).json())

    def get_audit(self, audit_id: str) -> Audit:
        return Audit.from_json(self._request("GET", f"/audits/{audit_id}").json())

    def list_audits(
        self,
        *,
        status: str | None = None,
        verdict: str | None = None,
        borderline: bool | None = None,
        skip: int = 0,
        limit: int = 100,
    ) -> tuple[list[Audit], int]:
        params: dict[str, Any] = {"skip": skip, "limit": limit}
        params.update({k: v for k, v in (("status", status), ("verdict", verdict)) if v})
        if borderline is not None:  # False filters too, so not in the truthiness test above
            params["borderline"] = borderline
        body = self._request("GET", "/audits", params=params).json()
        return [Audit.from_json(item) for item in body["data"]], int(body["count"])

    def wait(
        self,
        audit_id: str,
        *,
        poll_interval: float = 2.0,
        timeout: float | None = None,
        on_progress: Callable[[Audit], None] | None = None,
        max_poll_failures: int = 5,
    ) -> Audit:
        """Poll until the audit succeeds or fails and return it (check ``status``; a failed audit has
        ``error``). ``on_progress`` sees every poll. Raises ``WaitTimeoutError`` after ``timeout`` s.

        A long wait outlives server restarts and proxy hiccups, so up to ``max_poll_failures``
        consecutive unreachable or 5xx polls are retried; the audit itself is safe on the server.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        failures = 0
        while True:
            try:
                audit = self.get_audit(audit_id)
                failures = 0
            except (ServerUnreachableError, ApiError) as exc:
                if isinstance(exc, ApiError) and exc.status < 500:
                    raise
                failures += 1
                if failures >= max_poll_failures:
                    raise
                audit = None
            if audit is not None:
                if on_progress is not None:
                    on_progress(audit)
                if audit.finished:
                    return audit
            if deadline is not None and time.monotonic() + poll_interval > deadline:
                where = f"still {audit.status} ({audit.done}/{audit.total} classes)" if audit else "not reachable"
                raise WaitTimeoutError(
                    f"audit {audit_id} is {where} after {timeout:g} s; it keeps running on the server: "
                    f"check later with 'backdoor-audit status {audit_id}'"
                )
            time.sleep(poll_interval)

    @overload
    def get_report(self, audit_id: str, format: Literal["html"], *, artifact_uri: str | None = None) -> str: ...
    @overload
    def get_report(
        self, audit_id: str, format: Literal["json", "sarif"] = "json", *, artifact_uri: str | None = None
    ) -> dict[str, Any]: ...

    def get_report(
        self, audit_id: str, format: ReportFormat = "json", *, artifact_uri: str | None = None
    ) -> dict[str, Any] | str:
        """The report of a finished audit: the report.json dict, the self-contained HTML page, or a SARIF
        2.1.0 dict (built here from the JSON report, so any server version can serve it). For SARIF,
        ``artifact_uri`` is the checkpoint's path in your repository, which code-scanning tools need to
        place the findings."""
        if format == "html":
            return self._request("GET", f"/audits/{audit_id}/report.html").text
        report: dict[str, Any] = self._request("GET", f"/audits/{audit_id}/report").json()
        if format == "json":
            return report
        if format == "sarif":
            from app.reports.sarif import report_to_sarif

            return report_to_sarif(report, artifact_uri=artifact_uri)
        raise ValueError(f"unknown report format {format!r}; expected json, html or sarif")
