import io
import os
import pickle
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import TimeoutError as CeleryTimeoutError
from fastapi.testclient import TestClient
from safetensors.torch import save_file
from sqlalchemy.exc import DataError

from app import crud
from app.api.uploads import FORM_OVERHEAD_BYTES, MAX_FIELD_BYTES, MAX_FIELDS
from app.core.db import session_scope
from app.core.settings import Settings
from app.core.storage import Storage
from tests.app.conftest import RecordingQueue
from worker.nets import SmallCNN

FORM = {"input_shape": "1,28,28", "num_classes": "10", "arch": "small_cnn", "name": "tiny"}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """An untrained SmallCNN as safetensors (about 250 kB): real intake, no training."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_file(SmallCNN().state_dict(), str(path))
    return path.read_bytes()


def _upload(client: TestClient, headers: dict[str, str], data: bytes, **fields: str) -> Any:
    form = {**FORM, **fields}
    return client.post(
        "/api/v1/checkpoints",
        data=form,
        files={"file": ("m.safetensors", data, "application/octet-stream")},
        headers=headers,
    )


def _stored_files(settings: Settings) -> list[Path]:
    return [p for p in settings.storage_root.rglob("*") if p.is_file()]


def test_upload_then_same_bytes_again_returns_the_existing_checkpoint(
    client: TestClient,
    service_settings: Settings,
    team: dict[str, Any],
    other_team: dict[str, Any],
    tiny_checkpoint: bytes,
) -> None:
    first = _upload(client, team["headers"], tiny_checkpoint, class_names='["a","b","c","d","e","f","g","h","i","j"]')
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["format"] == "safetensors" and body["num_classes"] == 10 and body["input_shape"] == [1, 28, 28]
    assert body["size_bytes"] == len(tiny_checkpoint) and body["class_names"][9] == "j"
    again = _upload(client, team["headers"], tiny_checkpoint, name="renamed")
    assert again.status_code == 200 and again.json()["id"] == body["id"] and again.json()["name"] == "tiny"
    theirs = _upload(client, other_team["headers"], tiny_checkpoint)  # another team: its own row, same file
    assert theirs.status_code == 201 and theirs.json()["id"] != body["id"]
    assert [p.name for p in _stored_files(service_settings)] == [body["sha256"]]

    listed = client.get("/api/v1/checkpoints", headers=team["headers"]).json()
    assert listed["count"] == 1 and listed["data"][0]["id"] == body["id"]
    assert client.get(f"/api/v1/checkpoints/{body['id']}", headers=team["headers"]).json()["sha256"] == body["sha256"]

    assert client.delete(f"/api/v1/checkpoints/{body['id']}", headers=team["headers"]).status_code == 204
    assert client.get(f"/api/v1/checkpoints/{body['id']}", headers=team["headers"]).status_code == 404
    assert len(_stored_files(service_settings)) == 1  # the other team still has these bytes
    assert client.delete(f"/api/v1/checkpoints/{theirs.json()['id']}", headers=other_team["headers"]).status_code == 204
    assert _stored_files(service_settings) == []


def test_delete_is_409_while_an_audit_is_unfinished(
    client: TestClient, team: dict[str, Any], tiny_checkpoint: bytes
) -> None:
    checkpoint_id = _upload(client, team["headers"], tiny_checkpoint).json()["id"]
    client.post("/api/v1/audits", json={"checkpoint_id": checkpoint_id}, headers=team["headers"])
    response = client.delete(f"/api/v1/checkpoints/{checkpoint_id}", headers=team["headers"])
    assert response.status_code == 409 and "still queued or running" in response.json()["detail"]


def test_oversized_upload_is_413_and_nothing_is_stored(
    client: TestClient, service_settings: Settings, team: dict[str, Any]
) -> None:
    too_big = os.urandom(service_settings.max_checkpoint_bytes + 1)
    response = _upload(client, team["headers"], too_big)
    # the variable Settings reads (prefix included), not a name the server ignores
    assert response.status_code == 413 and "raise BACKDOOR_AUDIT_MAX_CHECKPOINT_BYTES" in response.json()["detail"]
    assert _stored_files(service_settings) == []
    assert client.get("/api/v1/checkpoints", headers=team["headers"]).json()["count"] == 0


def test_oversized_chunked_upload_is_cut_off_mid_stream(
    client: TestClient, service_settings: Settings, team: dict[str, Any]
) -> None:
    """A chunked body has no Content-Length to check up front: the limit holds on the bytes as they arrive."""
    boundary = "xyz"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="input_shape"\r\n\r\n1,28,28\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="num_classes"\r\n\r\n10\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="m.pt"\r\n\r\n'
    ).encode()

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(64):  # 4 MiB offered, 2 MiB allowed
            yield b"\0" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {**team["headers"], "Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = client.post("/api/v1/checkpoints", content=body(), headers=headers)
    assert response.status_code == 413
    assert _stored_files(service_settings) == []


class _Exploit:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned > /tmp/backdoor-audit-pwned",))


def test_hostile_pickle_is_422_naming_the_global_and_never_executed(
    client: TestClient, service_settings: Settings, team: dict[str, Any]
) -> None:
    payload = io.BytesIO()
    pickle.dump({"weight": _Exploit()}, payload)
    response = _upload(client, team["headers"], payload.getvalue())
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith("checkpoint refused:") and "system" in detail
    assert not Path("/tmp/backdoor-audit-pwned").exists()
    assert _stored_files(service_settings) == []


def test_declared_metadata_that_contradicts_the_weights_is_422(
    client: TestClient, service_settings: Settings, team: dict[str, Any], tiny_checkpoint: bytes
) -> None:
    response = _upload(client, team["headers"], tiny_checkpoint, num_classes="7")
    assert response.status_code == 422 and "num_classes=7" in response.json()["detail"]
    assert _stored_files(service_settings) == []


def test_bad_requests_say_what_is_missing(client: TestClient, team: dict[str, Any], tiny_checkpoint: bytes) -> None:
    as_json = client.post("/api/v1/checkpoints", json={"file": "x"}, headers=team["headers"])
    assert as_json.status_code == 415 and "multipart/form-data" in as_json.json()["detail"]
    no_file = client.post("/api/v1/checkpoints", data=FORM, files={"note": ("n.txt", b"x")}, headers=team["headers"])
    assert no_file.status_code == 422 and "'file'" in no_file.json()["detail"]
    missing = client.post(
        "/api/v1/checkpoints",
        data={"input_shape": "1,28,28"},
        files={"file": ("m.safetensors", tiny_checkpoint)},
        headers=team["headers"],
    )
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["num_classes"]
    bad_shape = _upload(client, team["headers"], tiny_checkpoint, input_shape="28,28")
    assert bad_shape.status_code == 422 and bad_shape.json()["detail"][0]["loc"] == ["input_shape"]
    assert client.post("/api/v1/checkpoints", data=FORM, files={"file": ("m", tiny_checkpoint)}).status_code == 401


def test_queue_validation_without_a_worker_is_503_and_nothing_is_stored(
    client: TestClient,
    service_settings: Settings,
    queue: RecordingQueue,
    team: dict[str, Any],
    tiny_checkpoint: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_worker(staged_key: str, spec: dict[str, Any]) -> dict[str, Any]:
        assert (service_settings.storage_root / staged_key).is_file()  # the worker reads the staged upload
        raise CeleryTimeoutError("The operation timed out.")

    monkeypatch.setattr(service_settings, "checkpoint_validation", "queue")
    monkeypatch.setattr(queue, "validate_checkpoint", no_worker)
    response = _upload(client, team["headers"], tiny_checkpoint)
    assert response.status_code == 503 and "'cpu' queue" in response.json()["detail"]
    assert _stored_files(service_settings) == []

    monkeypatch.setattr(queue, "validate_checkpoint", lambda key, spec: {"ok": False, "error": "bad bytes"})
    refused = _upload(client, team["headers"], tiny_checkpoint)
    assert refused.status_code == 422 and refused.json()["detail"] == "checkpoint refused: bad bytes"


def _multipart(boundary: str, fields: list[tuple[str, str]], file: bytes = b"x") -> bytes:
    parts = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{n}"\r\n\r\n{v}\r\n' for n, v in fields)
    head = f'{parts}--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="m"\r\n\r\n'.encode()
    return head + file + f"\r\n--{boundary}--\r\n".encode()


def test_a_field_sent_twice_is_422_naming_it(
    client: TestClient, service_settings: Settings, team: dict[str, Any]
) -> None:
    """Repeated names were neither counted against MAX_FIELDS nor refused: the last one silently won."""
    fields = [("input_shape", "1,28,28"), ("num_classes", "10")] + [("name", "v" * 100)] * 50
    body = _multipart("xyz", fields)
    headers = {**team["headers"], "Content-Type": "multipart/form-data; boundary=xyz"}
    response = client.post("/api/v1/checkpoints", content=iter([body]), headers=headers)  # chunked
    assert response.status_code == 422 and response.json()["detail"] == (
        "form field 'name' is sent more than once; send each field once"
    )
    assert _stored_files(service_settings) == []


def test_a_chunked_body_is_413_once_its_fields_pass_the_form_allowance(
    client: TestClient, service_settings: Settings, team: dict[str, Any]
) -> None:
    """No Content-Length to check up front, and each field under its own bound: the total is capped too."""
    field_bytes = MAX_FIELD_BYTES - 1024
    count = (service_settings.max_checkpoint_bytes + FORM_OVERHEAD_BYTES) // field_bytes + 1
    assert count <= MAX_FIELDS  # each field and their number are within bounds: only the total is not
    body = _multipart("xyz", [(f"f{i}", "v" * field_bytes) for i in range(count)])
    headers = {**team["headers"], "Content-Type": "multipart/form-data; boundary=xyz"}
    response = client.post(
        "/api/v1/checkpoints", content=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]), headers=headers
    )
    assert response.status_code == 413 and "for the form fields" in response.json()["detail"]
    assert _stored_files(service_settings) == []


@pytest.mark.parametrize("fields", [{"mean": "nan"}, {"std": "inf"}, {"std": "[1e400]"}, {"mean": "[NaN]"}])
def test_non_finite_normalisation_is_422_and_nothing_is_stored(
    client: TestClient, service_settings: Settings, team: dict[str, Any], tiny_checkpoint: bytes, fields: dict[str, str]
) -> None:
    """std=inf passes intake (inputs normalise to zero, logits stay finite), and Postgres's json type then
    refused the row: a 500 with the file already moved into storage."""
    response = _upload(client, team["headers"], tiny_checkpoint, **fields)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] in ("mean", "std")
    assert _stored_files(service_settings) == []


def test_deeply_nested_class_names_are_422_not_500(
    client: TestClient, service_settings: Settings, team: dict[str, Any], tiny_checkpoint: bytes
) -> None:
    response = _upload(client, team["headers"], tiny_checkpoint, class_names="[" * 100_000)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["class_names"] and "nested" in response.json()["detail"][0]["msg"]
    assert _stored_files(service_settings) == []


def test_a_row_the_database_refuses_leaves_no_file_in_storage(
    client: TestClient,
    service_settings: Settings,
    team: dict[str, Any],
    tiny_checkpoint: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refused(**kwargs: Any) -> Any:
        raise DataError("INSERT INTO checkpoints ...", {}, Exception("invalid input syntax for type json"))

    monkeypatch.setattr(crud, "create_checkpoint", refused)
    with pytest.raises(DataError):
        _upload(client, team["headers"], tiny_checkpoint)
    assert _stored_files(service_settings) == []


def test_uploading_again_restores_a_file_missing_under_the_row(
    client: TestClient, service_settings: Settings, team: dict[str, Any], tiny_checkpoint: bytes
) -> None:
    first = _upload(client, team["headers"], tiny_checkpoint).json()
    stored = service_settings.storage_root / Storage.checkpoint_key(first["sha256"])
    stored.unlink()  # what a delete racing an upload of the same bytes left behind before the bytes lock
    again = _upload(client, team["headers"], tiny_checkpoint)
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    assert stored.read_bytes() == tiny_checkpoint
    assert _stored_files(service_settings) == [stored]


def test_a_delete_racing_an_upload_of_the_same_bytes_keeps_the_file(
    client: TestClient,
    service_settings: Settings,
    team: dict[str, Any],
    other_team: dict[str, Any],
    tiny_checkpoint: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Blue deletes its checkpoint while red uploads the same bytes: red's row must not end up without a file.

    Red's upload is held just before its row is written, after intake; blue's delete runs meanwhile.
    """
    theirs = _upload(client, other_team["headers"], tiny_checkpoint).json()
    stored = service_settings.storage_root / Storage.checkpoint_key(theirs["sha256"])
    inserting, resume = threading.Event(), threading.Event()
    create_checkpoint = crud.create_checkpoint

    def held_create_checkpoint(**kwargs: Any) -> Any:
        inserting.set()
        assert resume.wait(30)
        return create_checkpoint(**kwargs)

    monkeypatch.setattr(crud, "create_checkpoint", held_create_checkpoint)
    responses: dict[str, Any] = {}
    upload = threading.Thread(target=lambda: responses.update(upload=_upload(client, team["headers"], tiny_checkpoint)))
    delete = threading.Thread(
        target=lambda: responses.update(
            delete=client.delete(f"/api/v1/checkpoints/{theirs['id']}", headers=other_team["headers"])
        )
    )
    upload.start()
    assert inserting.wait(60)
    delete.start()
    delete.join(timeout=2)  # it may finish (no lock: it unlinks the file red is about to use) or wait
    resume.set()
    upload.join(timeout=60)
    delete.join(timeout=60)
    assert responses["upload"].status_code == 201 and responses["delete"].status_code == 204
    assert stored.read_bytes() == tiny_checkpoint  # red's new row has its file
    with session_scope(service_settings.database_url_resolved) as session:
        assert crud.get_checkpoint(
            session=session, team_id=team["id"], checkpoint_id=uuid.UUID(responses["upload"].json()["id"])
        )
