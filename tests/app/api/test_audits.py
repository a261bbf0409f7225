import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import crud
from app.api.routes import audits
from app.core.db import session_scope
from app.core.settings import Settings
from app.core.storage import Storage
from app.models import Verdict
from tests.app.conftest import RecordingQueue

FAST = {"saliency": {"iterations": 20, "refine_iterations": 5, "restarts": 1, "seeds_per_step": 8}}


def test_submit_commits_then_enqueues_and_returns_202_with_location(
    client: TestClient, team: dict[str, Any], queue: RecordingQueue, make_checkpoint: Callable[..., uuid.UUID]
) -> None:
    checkpoint_id = make_checkpoint(team["id"])
    response = client.post(
        "/api/v1/audits", json={"checkpoint_id": str(checkpoint_id), "config": FAST}, headers=team["headers"]
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert response.headers["location"] == f"/api/v1/audits/{body['id']}"
    assert body["status"] == "queued" and body["progress"] == {"done": 0, "total": 10, "fraction": 0.0}
    assert body["config"]["saliency"]["iterations"] == 20 and "scoring" in body["config"]  # defaults filled in
    assert queue.enqueued == [uuid.UUID(body["id"])]
    polled = client.get(response.headers["location"], headers=team["headers"])
    assert polled.status_code == 200 and polled.json()["status"] == "queued"


def test_invalid_config_is_422_naming_the_key_and_nothing_is_queued(
    client: TestClient, team: dict[str, Any], queue: RecordingQueue, make_checkpoint: Callable[..., uuid.UUID]
) -> None:
    checkpoint_id = str(make_checkpoint(team["id"]))
    for config, fragment in (
        ({"saliency": {"iteratons": 5}}, "iteratons"),
        ({"saliency": {"iterations": 0}}, "iterations"),
        ({"colour": 1}, "colour"),
    ):
        response = client.post(
            "/api/v1/audits", json={"checkpoint_id": checkpoint_id, "config": config}, headers=team["headers"]
        )
        assert response.status_code == 422 and fragment in response.json()["detail"]
    missing = client.post("/api/v1/audits", json={"config": {}}, headers=team["headers"])
    assert missing.status_code == 422
    assert queue.enqueued == []
    assert client.get("/api/v1/audits", headers=team["headers"]).json()["count"] == 0


def test_other_teams_and_unknown_ids_are_404(
    client: TestClient,
    team: dict[str, Any],
    other_team: dict[str, Any],
    make_checkpoint: Callable[..., uuid.UUID],
) -> None:
    checkpoint_id = str(make_checkpoint(team["id"]))
    as_other = client.post("/api/v1/audits", json={"checkpoint_id": checkpoint_id}, headers=other_team["headers"])
    assert as_other.status_code == 404
    audit_id = client.post("/api/v1/audits", json={"checkpoint_id": checkpoint_id}, headers=team["headers"]).json()[
        "id"
    ]
    for path in (
        f"/api/v1/audits/{audit_id}",
        f"/api/v1/audits/{audit_id}/report",
        f"/api/v1/checkpoints/{checkpoint_id}",
    ):
        assert client.get(path, headers=other_team["headers"]).status_code == 404, path
    assert client.delete(f"/api/v1/checkpoints/{checkpoint_id}", headers=other_team["headers"]).status_code == 404
    assert client.get(f"/api/v1/audits/{uuid.uuid4()}", headers=team["headers"]).status_code == 404
    assert client.get("/api/v1/audits/not-a-uuid", headers=team["headers"]).status_code == 422


def test_broker_failure_is_503_and_the_audit_is_marked_failed(
    client: TestClient, team: dict[str, Any], queue: RecordingQueue, make_checkpoint: Callable[..., uuid.UUID]
) -> None:
    queue.broker_error = ConnectionError("connection refused")
    checkpoint_id = str(make_checkpoint(team["id"]))
    response = client.post("/api/v1/audits", json={"checkpoint_id": checkpoint_id}, headers=team["headers"])
    assert response.status_code == 503 and "BROKER_URL" in response.json()["detail"]
    audits = client.get("/api/v1/audits", headers=team["headers"]).json()["data"]
    assert audits[0]["status"] == "failed" and "connection refused" in audits[0]["error"]


def _queue_audits(
    client: TestClient, team: dict[str, Any], make_checkpoint: Callable[..., uuid.UUID], *, count: int
) -> list[str]:
    """Submit ``count`` audits of one new checkpoint of the team; their ids, oldest first."""
    checkpoint_id = str(make_checkpoint(team["id"]))
    return [
        client.post("/api/v1/audits", json={"checkpoint_id": checkpoint_id}, headers=team["headers"]).json()["id"]
        for _ in range(count)
    ]


def test_list_filters_and_paginates(
    client: TestClient,
    service_settings: Settings,
    team: dict[str, Any],
    make_checkpoint: Callable[..., uuid.UUID],
) -> None:
    ids = _queue_audits(client, team, make_checkpoint, count=3)
    with session_scope(service_settings.database_url_resolved) as session:
        crud.complete_audit(
            session=session,
            audit_id=uuid.UUID(ids[0]),
            verdict=Verdict.backdoored,
            probability=0.97,
            borderline=False,
            suspected_classes=[3],
            class_scores={},
        )
    headers = team["headers"]
    page = client.get("/api/v1/audits", params={"limit": 2}, headers=headers).json()
    assert page["count"] == 3 and len(page["data"]) == 2
    assert client.get("/api/v1/audits", params={"skip": 2}, headers=headers).json()["data"][0]["id"] in ids
    flagged = client.get("/api/v1/audits", params={"verdict": "backdoored"}, headers=headers).json()
    assert flagged["count"] == 1 and flagged["data"][0]["suspected_classes"] == [3]
    assert client.get("/api/v1/audits", params={"status": "queued"}, headers=headers).json()["count"] == 2
    assert client.get("/api/v1/audits", params={"status": "bogus"}, headers=headers).status_code == 422
    assert client.get("/api/v1/audits", params={"limit": 1000}, headers=headers).status_code == 422


def test_list_filters_by_borderline_and_the_summary_carries_it(
    client: TestClient,
    service_settings: Settings,
    team: dict[str, Any],
    make_checkpoint: Callable[..., uuid.UUID],
) -> None:
    headers = team["headers"]
    ids = _queue_audits(client, team, make_checkpoint, count=3)
    with session_scope(service_settings.database_url_resolved) as session:
        for audit_id, probability, borderline in ((ids[0], 0.88, True), (ids[1], 0.99, False)):
            crud.complete_audit(
                session=session,
                audit_id=uuid.UUID(audit_id),
                verdict=Verdict.suspicious,
                probability=probability,
                borderline=borderline,
                suspected_classes=[3],
                class_scores={},
            )
    for value, expected in (("true", ids[0]), ("false", ids[1])):  # the queued third has neither
        listed = client.get("/api/v1/audits", params={"borderline": value}, headers=headers).json()
        assert listed["count"] == 1 and [a["id"] for a in listed["data"]] == [expected], listed
        assert listed["data"][0]["borderline"] is (value == "true")
    both = {"borderline": "true", "verdict": "suspicious", "status": "succeeded"}
    assert [a["id"] for a in client.get("/api/v1/audits", params=both, headers=headers).json()["data"]] == [ids[0]]
    assert client.get(f"/api/v1/audits/{ids[2]}", headers=headers).json()["borderline"] is None
    assert client.get("/api/v1/audits", params={"borderline": "maybe"}, headers=headers).status_code == 422


def test_results_are_409_until_succeeded_then_served_from_storage(
    client: TestClient,
    service_settings: Settings,
    team: dict[str, Any],
    make_checkpoint: Callable[..., uuid.UUID],
) -> None:
    checkpoint_id = str(make_checkpoint(team["id"], num_classes=2))
    audit_id = client.post("/api/v1/audits", json={"checkpoint_id": checkpoint_id}, headers=team["headers"]).json()[
        "id"
    ]
    pending = client.get(f"/api/v1/audits/{audit_id}/report", headers=team["headers"])
    assert pending.status_code == 409 and "queued" in pending.json()["detail"]

    storage = Storage(service_settings.storage_root)
    report = {
        "verdict": "clean",
        "classes": [
            {"class_index": 0, "map_file": "class_0000_map.png", "heatmap_file": "class_0000_heatmap.png"},
            {"class_index": 1, "map_file": "class_0001_map.png", "heatmap_file": "class_0001_heatmap.png"},
        ],
    }
    storage.write_bytes(Storage.audit_key(uuid.UUID(audit_id), "report.json"), json.dumps(report).encode())
    storage.write_bytes(Storage.audit_key(uuid.UUID(audit_id), "class_0001_heatmap.png"), b"\x89PNG fake")
    with session_scope(service_settings.database_url_resolved) as session:
        crud.complete_audit(
            session=session,
            audit_id=uuid.UUID(audit_id),
            verdict=Verdict.clean,
            probability=0.1,
            borderline=False,
            suspected_classes=[],
            class_scores={},
        )
    assert client.get(f"/api/v1/audits/{audit_id}/report", headers=team["headers"]).json() == report
    image = client.get(f"/api/v1/audits/{audit_id}/classes/1/heatmap.png", headers=team["headers"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == b"\x89PNG fake"
    for path in ("classes/0/heatmap.png", "classes/7/map.png", "classes/1/other.png"):
        assert client.get(f"/api/v1/audits/{audit_id}/{path}", headers=team["headers"]).status_code in (404, 422)


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ('{"saliency": {"radius": NaN}}', "saliency.radius is nan"),
        ('{"saliency": {"iterations": 1e400}}', "saliency.iterations is inf"),
        ('{"scoring": {"suspicious_at": -Infinity}}', "scoring.suspicious_at is -inf"),
        ('{"saliency": ' + "[" * 40 + "]" * 40 + "}", "nested more than"),
    ],
)
def test_non_finite_or_deep_config_is_422_and_nothing_is_stored(
    client: TestClient,
    team: dict[str, Any],
    queue: RecordingQueue,
    make_checkpoint: Callable[..., uuid.UUID],
    config: str,
    fragment: str,
) -> None:
    """The body's JSON parser accepts NaN, Infinity and 1e400 (infinity); Postgres's json type does not."""
    checkpoint_id = make_checkpoint(team["id"])
    body = f'{{"checkpoint_id": "{checkpoint_id}", "config": {config}}}'
    headers = {**team["headers"], "Content-Type": "application/json"}
    response = client.post("/api/v1/audits", content=body, headers=headers)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"invalid audit config: {fragment}"), detail
    assert queue.enqueued == []
    assert client.get("/api/v1/audits", headers=team["headers"]).json()["count"] == 0


def test_a_checkpoint_deleted_while_its_audit_is_submitted_is_404(
    client: TestClient,
    service_settings: Settings,
    team: dict[str, Any],
    queue: RecordingQueue,
    make_checkpoint: Callable[..., uuid.UUID],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another request deletes the checkpoint after this one read it: the audit's foreign key fails."""
    checkpoint_id = make_checkpoint(team["id"])
    normalised_config = audits.normalised_config

    def delete_meanwhile(config: dict[str, Any]) -> dict[str, Any]:
        with session_scope(service_settings.database_url_resolved) as session:
            checkpoint = crud.get_checkpoint(session=session, team_id=team["id"], checkpoint_id=checkpoint_id)
            assert checkpoint is not None
            crud.delete_checkpoint(session=session, checkpoint=checkpoint)
        return normalised_config(config)

    monkeypatch.setattr(audits, "normalised_config", delete_meanwhile)
    response = client.post("/api/v1/audits", json={"checkpoint_id": str(checkpoint_id)}, headers=team["headers"])
    assert response.status_code == 404 and response.json()["detail"] == f"checkpoint {checkpoint_id} not found"
    assert queue.enqueued == []
    assert client.get("/api/v1/audits", headers=team["headers"]).json()["count"] == 0
