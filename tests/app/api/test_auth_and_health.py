from typing import Any

from fastapi.testclient import TestClient

from tests.app.conftest import RecordingQueue


def test_no_key_or_unknown_key_is_401_with_a_hint(client: TestClient, team: dict[str, Any]) -> None:
    for headers in ({}, {"Authorization": "Bearer ba_not-a-real-key"}, {"Authorization": "Basic abc"}):
        response = client.get("/api/v1/audits", headers=headers)
        assert response.status_code == 401, headers
        assert "keys create" in response.json()["detail"]
        assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/v1/audits", headers=team["headers"]).status_code == 200


def test_health_ready_and_metrics(client: TestClient, queue: RecordingQueue) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    queue.broker_error = ConnectionError("redis down")
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"]["broker"] == "error: ConnectionError: redis down"
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert 'backdoor_audit_audits{status="queued"} 0.0' in metrics.text
    assert 'backdoor_audit_http_requests_total{method="GET",route="/readyz",status="503"}' in metrics.text


def test_openapi_documents_the_upload_form(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    upload = schema["paths"]["/api/v1/checkpoints"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert set(upload["schema"]["required"]) == {"file", "input_shape", "num_classes"}
    assert "/api/v1/audits/{audit_id}/classes/{class_index}/{image}.png" in schema["paths"]
