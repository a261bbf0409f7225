"""Dashboard pages through the real app (SQLite, storage; a recording queue instead of the broker)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import crud
from app.api.routes.dashboard import CLASSES_PER_PAGE, COOKIE
from app.core.db import session_scope
from app.core.settings import Settings
from app.core.storage import REPORT_FILE, Storage
from app.models import Verdict
from tests.app.conftest import RecordingQueue
from tests.app.reports.conftest import make_report

MakeAudit = Callable[..., uuid.UUID]


@pytest.fixture
def signed_in(client: TestClient, team: dict[str, Any]) -> TestClient:
    client.cookies.set(COOKIE, team["key"])
    return client


@pytest.fixture
def make_audit(service_settings: Settings, make_checkpoint: Callable[..., uuid.UUID]) -> MakeAudit:
    """An audit row; with ``report`` it is finished and its report and images are in storage."""

    def make(
        team_id: uuid.UUID,
        *,
        num_classes: int = 10,
        finished: bool = True,
        verdict: str = "backdoored",
        suspected: tuple[int, ...] = (3,),
        borderline: bool = False,
    ) -> uuid.UUID:
        sha = uuid.uuid4().hex * 2
        checkpoint_id = make_checkpoint(team_id, num_classes=num_classes, sha256=sha)
        with session_scope(service_settings.database_url_resolved) as session:
            checkpoint = crud.get_checkpoint(session=session, team_id=team_id, checkpoint_id=checkpoint_id)
            assert checkpoint is not None
            audit = crud.create_audit(session=session, team_id=team_id, checkpoint=checkpoint, config={})
            audit_id = audit.id
            if finished:
                crud.complete_audit(
                    session=session,
                    audit_id=audit_id,
                    verdict=Verdict(verdict),
                    probability=0.93,
                    borderline=borderline,
                    suspected_classes=list(suspected),
                    class_scores={},
                )
            session.commit()
        if finished:
            report, images = make_report(num_classes=num_classes, suspected=suspected, verdict=verdict)
            storage = Storage(service_settings.storage_root)
            storage.write_bytes(Storage.audit_key(audit_id, REPORT_FILE), json.dumps(report).encode())
            for name, data in images.items():
                storage.write_bytes(Storage.audit_key(audit_id, name), data)
        return audit_id

    return make


def test_signed_out_pages_redirect_to_login_with_the_page_to_return_to(client: TestClient) -> None:
    response = client.get("/audits/" + str(uuid.uuid4()) + "?page=2", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=%2Faudits%2F")
    assert "page%3D2" in response.headers["location"]


def test_login_sets_a_secure_httponly_strict_cookie(client: TestClient, team: dict[str, Any]) -> None:
    bad = client.post("/login", data={"api_key": "ba_wrong", "next": "/"}, follow_redirects=False)
    assert bad.status_code == 401 and "not known to this server" in bad.text
    good = client.post("/login", data={"api_key": team["key"], "next": "/upload"}, follow_redirects=False)
    assert good.status_code == 303 and good.headers["location"] == "/upload"
    cookie = good.headers["set-cookie"].lower()
    assert cookie.startswith(f"{COOKIE}=")
    assert "httponly" in cookie and "secure" in cookie and "samesite=strict" in cookie


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_login_never_redirects_off_site(client: TestClient, team: dict[str, Any], target: str) -> None:
    response = client.post("/login", data={"api_key": team["key"], "next": target}, follow_redirects=False)
    assert response.headers["location"] == "/"


def test_audit_list_shows_only_the_teams_audits_and_filters_by_verdict(
    signed_in: TestClient, team: dict[str, Any], other_team: dict[str, Any], make_audit: MakeAudit
) -> None:
    flagged = make_audit(team["id"], verdict="backdoored")
    clean = make_audit(team["id"], verdict="clean", suspected=())
    foreign = make_audit(other_team["id"])
    page = signed_in.get("/").text
    assert str(flagged) in page and str(clean) in page and str(foreign) not in page
    filtered = signed_in.get("/?verdict=clean").text
    assert str(clean) in filtered and str(flagged) not in filtered
    submitted = signed_in.get("/?status=&verdict=clean")  # the form as sent with status left at "any"
    assert submitted.status_code == 200 and str(clean) in submitted.text and str(flagged) not in submitted.text


def test_audit_list_marks_borderline_verdicts_and_filters_by_them(
    signed_in: TestClient, team: dict[str, Any], make_audit: MakeAudit
) -> None:
    near = make_audit(team["id"], verdict="suspicious", borderline=True)
    far = make_audit(team["id"], verdict="backdoored")
    running = make_audit(team["id"], finished=False)
    rows = dict(re.findall(r'<tr data-audit-id="([^"]+)">(.*?)</tr>', signed_in.get("/").text, re.S))
    assert set(rows) == {str(near), str(far), str(running)}
    assert 'class="badge borderline"' in rows[str(near)]
    assert 'class="badge borderline"' not in rows[str(far)] + rows[str(running)]
    for value, expected in (("true", near), ("false", far)):  # the running audit is neither
        page = signed_in.get(f"/?status=&verdict=&borderline={value}").text
        assert re.findall(r'<tr data-audit-id="([^"]+)">', page) == [str(expected)]
        assert f'<option value="{value}" selected>' in page


def test_finished_audit_page_highlights_the_suspect_and_links_its_images(
    signed_in: TestClient, team: dict[str, Any], make_audit: MakeAudit
) -> None:
    audit_id = make_audit(team["id"], suspected=(3,))
    page = signed_in.get(f"/audits/{audit_id}")
    assert page.status_code == 200
    assert re.search(r'<div class="card suspected" id="class-3"', page.text)
    assert 'id="class-4"' in page.text and '<div class="card suspected" id="class-4"' not in page.text
    assert 'class="bbox"' in page.text and 'class="threshold"' in page.text
    image_url = f"/audits/{audit_id}/classes/3/map.png"
    assert image_url in page.text
    image = signed_in.get(image_url)
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")


def test_another_teams_audit_is_not_found(
    signed_in: TestClient, other_team: dict[str, Any], make_audit: MakeAudit
) -> None:
    audit_id = make_audit(other_team["id"])
    assert signed_in.get(f"/audits/{audit_id}").status_code == 404
    assert signed_in.get(f"/audits/{audit_id}/classes/3/map.png").status_code == 404
    assert signed_in.get(f"/audits/{audit_id}/progress").status_code == 404


def test_running_audit_page_polls_progress_json(
    signed_in: TestClient, client: TestClient, team: dict[str, Any], make_audit: MakeAudit
) -> None:
    audit_id = make_audit(team["id"], finished=False)
    page = signed_in.get(f"/audits/{audit_id}").text
    assert f"/audits/{audit_id}/progress" in page and "<progress" in page
    progress = signed_in.get(f"/audits/{audit_id}/progress").json()
    assert progress["status"] == "queued" and progress["progress"] == {"done": 0, "total": 10, "fraction": 0.0}
    signed_in.cookies.clear()
    assert client.get(f"/audits/{audit_id}/progress").status_code == 401


def test_thousand_class_audit_page_is_paged_and_small(
    signed_in: TestClient, team: dict[str, Any], make_audit: MakeAudit
) -> None:
    audit_id = make_audit(team["id"], num_classes=1000, suspected=(977,))
    first = signed_in.get(f"/audits/{audit_id}")
    assert len(first.content) < 500_000
    assert first.text.count('<div class="card') == CLASSES_PER_PAGE
    assert "page 1 of 21" in first.text
    assert 'id="trigger-977"' in first.text  # the suspect's evidence is on every page
    last = signed_in.get(f"/audits/{audit_id}?page=21").text
    assert '<div class="card suspected" id="class-977"' in last
    assert f"/audits/{audit_id}/classes/990/map.png" in last  # every page's cards have their images


@pytest.mark.parametrize("fmt", ["html", "json", "sarif", "pdf"])
def test_report_downloads(signed_in: TestClient, team: dict[str, Any], make_audit: MakeAudit, fmt: str) -> None:
    if fmt == "pdf":
        pytest.importorskip("weasyprint")
    audit_id = make_audit(team["id"])
    response = signed_in.get(f"/audits/{audit_id}/report.{fmt}")
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    if fmt == "html":
        assert "data:image/png;base64," in response.text
    elif fmt == "pdf":
        assert response.content.startswith(b"%PDF-")
    elif fmt == "sarif":
        assert response.json()["runs"][0]["results"][0]["properties"]["class_index"] == 3
    else:
        assert response.json()["suspected_classes"] == [3]


def test_checkpoint_page_starts_an_audit_and_reports_a_bad_config(
    signed_in: TestClient,
    team: dict[str, Any],
    make_checkpoint: Callable[..., uuid.UUID],
    queue: RecordingQueue,
) -> None:
    checkpoint_id = make_checkpoint(team["id"])
    assert "Start audit" in signed_in.get(f"/checkpoints/{checkpoint_id}").text
    bad = signed_in.post(f"/checkpoints/{checkpoint_id}/audits", data={"config": "{not json"})
    assert bad.status_code == 422 and "not valid JSON" in bad.text and queue.enqueued == []
    unknown = signed_in.post(f"/checkpoints/{checkpoint_id}/audits", data={"config": '{"nope": 1}'})
    assert unknown.status_code == 422 and "invalid audit config" in unknown.text
    started = signed_in.post(
        f"/checkpoints/{checkpoint_id}/audits",
        data={"config": '{"saliency": {"iterations": 20}}'},
        follow_redirects=False,
    )
    assert started.status_code == 303
    audit_id = uuid.UUID(started.headers["location"].rsplit("/", 1)[1])
    assert queue.enqueued == [audit_id]


@pytest.fixture(scope="module")
def small_cnn_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    from worker.nets import SmallCNN

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "small_cnn.safetensors"
    save_file(SmallCNN(num_classes=10).state_dict(), str(path))
    return path.read_bytes()


def test_upload_form_stores_the_checkpoint_and_starts_an_audit_with_the_config(
    signed_in: TestClient,
    team: dict[str, Any],
    queue: RecordingQueue,
    small_cnn_bytes: bytes,
    service_settings: Settings,
) -> None:
    assert 'enctype="multipart/form-data"' in signed_in.get("/upload").text
    form = {"input_shape": "1,28,28", "num_classes": "10", "arch": "small_cnn"}
    files = {"file": ("model.safetensors", small_cnn_bytes, "application/octet-stream")}
    response = signed_in.post(
        "/upload?config=" + json.dumps({"saliency": {"iterations": 20}}),
        data=form,
        files=files,
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    audit_id = uuid.UUID(response.headers["location"].rsplit("/", 1)[1])
    assert queue.enqueued == [audit_id]
    with session_scope(service_settings.database_url_resolved) as session:
        audit = crud.get_audit(session=session, team_id=team["id"], audit_id=audit_id)
        assert audit is not None and audit.config["saliency"]["iterations"] == 20


def test_upload_form_shows_the_apis_refusal(signed_in: TestClient, queue: RecordingQueue) -> None:
    files = {"file": ("model.safetensors", b"not a checkpoint", "application/octet-stream")}
    response = signed_in.post("/upload", data={"input_shape": "1,28,28", "num_classes": "10"}, files=files)
    assert response.status_code == 422
    assert 'id="upload-error"' in response.text and "checkpoint refused" in response.text
    assert queue.enqueued == []


def test_page_errors_are_html_pages_with_the_reason(signed_in: TestClient) -> None:
    missing = uuid.uuid4()
    response = signed_in.get(f"/audits/{missing}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert f"audit {missing} not found" in response.text and 'href="/"' in response.text


def test_form_posts_from_other_sites_are_refused(client: TestClient, team: dict[str, Any]) -> None:
    foreign = client.post(
        "/login", data={"api_key": team["key"]}, headers={"Origin": "https://evil.example"}, follow_redirects=False
    )
    assert foreign.status_code == 403 and "set-cookie" not in foreign.headers
    same = client.post(
        "/login", data={"api_key": team["key"]}, headers={"Origin": "http://testserver"}, follow_redirects=False
    )
    assert same.status_code == 303


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        ("get", "/?page=0", "page: Input should be greater than or equal to 1"),
        ("get", "/?verdict=bogus", "verdict: Input should be &#39;clean&#39;, &#39;suspicious&#39; or"),
        ("get", "/audits/not-a-uuid", "audit_id: Input should be a valid UUID"),
        ("post", "/login", "api_key: Field required"),
    ],
)
def test_invalid_parameters_are_html_error_pages_too(
    signed_in: TestClient, method: str, path: str, message: str
) -> None:
    response = signed_in.request(method, path, data={} if method == "post" else None)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    assert 'id="page-error"' in response.text and message in response.text, response.text


@pytest.mark.parametrize(
    ("config", "fragment"),
    [("[" * 5000, "nested more than"), ('{"saliency": {"radius": NaN}}', "NaN is not a JSON number")],
)
def test_checkpoint_page_refuses_deep_or_non_finite_config_with_the_form_again(
    signed_in: TestClient,
    team: dict[str, Any],
    make_checkpoint: Callable[..., uuid.UUID],
    queue: RecordingQueue,
    config: str,
    fragment: str,
) -> None:
    checkpoint_id = make_checkpoint(team["id"])
    response = signed_in.post(f"/checkpoints/{checkpoint_id}/audits", data={"config": config})
    assert response.status_code == 422 and "invalid audit config: " + fragment in response.text
    assert "Start audit" in response.text and queue.enqueued == []


def _reads(monkeypatch: pytest.MonkeyPatch, method: str) -> list[str]:
    """File names read through ``Path.<method>`` from now on."""
    names: list[str] = []
    original = getattr(Path, method)

    def spy(self: Path, *args: Any, **kwargs: Any) -> Any:
        names.append(self.name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, method, spy)
    return names


def test_report_html_reads_only_the_images_it_embeds(
    signed_in: TestClient, team: dict[str, Any], make_audit: MakeAudit, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.reports.view import DEFAULT_GRID_LIMIT

    audit_id = make_audit(team["id"], num_classes=300, suspected=(3, 250))
    reads = _reads(monkeypatch, "read_bytes")
    response = signed_in.get(f"/audits/{audit_id}/report.html")
    assert response.status_code == 200
    images = [name for name in reads if name.endswith(".png")]
    # map and heatmap of each drawn class, and the suspects' triggers; 602 files in storage
    assert 0 < len(images) <= 2 * DEFAULT_GRID_LIMIT + 2, len(images)
    assert {"class_0250_trigger.png", "class_0250_map.png"} <= set(images)
    assert len(images) == len(set(images)) and "data:image/png;base64," in response.text


def test_class_images_parse_the_report_once_for_the_whole_page(
    signed_in: TestClient, team: dict[str, Any], make_audit: MakeAudit, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit_id = make_audit(team["id"], num_classes=20)
    reads = _reads(monkeypatch, "read_text")
    for class_index in range(5):
        for kind in ("map", "heatmap"):
            image = signed_in.get(f"/audits/{audit_id}/classes/{class_index}/{kind}.png")
            assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert signed_in.get(f"/audits/{audit_id}/classes/4/trigger.png").status_code == 404  # not a suspect
    assert reads.count(REPORT_FILE) == 1
