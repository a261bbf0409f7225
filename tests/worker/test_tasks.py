"""The audit tasks run eagerly (in this process, no broker) on SQLite with a tiny untrained model.

The real worker process, broker and chord are exercised in tests/integration; here the task logic:
a whole audit, idempotent re-runs, and failures turned into messages a user can act on.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from app import crud
from app.core.db import migrate_database, session_scope
from app.core.settings import Settings, get_settings
from app.core.storage import REPORT_FILE, Storage
from app.models import AuditStatus
from app.schemas import Progress
from worker import tasks
from worker.celery_app import celery_app
from worker.nets import SmallCNN
from worker.tasks import compute_maps, finalize_audit, orchestrate_audit

FAST: dict[str, Any] = {
    "saliency": {"iterations": 10, "refine_iterations": 2, "restarts": 1, "seeds_per_step": 4, "fidelity_seeds": 8}
}


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    for name in ("DATABASE_URL", "BROKER_URL", "STORAGE_DIR", "RESULT_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BACKDOOR_AUDIT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BACKDOOR_AUDIT_CLASS_GROUP_SIZE", "4")
    monkeypatch.setenv("BACKDOOR_AUDIT_DEVICE", "cpu")
    get_settings.cache_clear()
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    # the app was configured at import, before this test's data dir existed: keep chord results in memory
    monkeypatch.setitem(celery_app.conf, "result_backend", "cache+memory://")
    settings = get_settings()
    settings.ensure_dirs()
    migrate_database(settings.database_url_resolved)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: extra threads only contend on a shared CI machine
    yield settings
    torch.set_num_threads(threads)
    get_settings.cache_clear()


def _audit(settings: Settings, config: dict[str, Any], *, store_file: bool = True) -> str:
    torch.manual_seed(0)
    path = settings.data_dir / "tiny.safetensors"
    save_file(SmallCNN().state_dict(), str(path))
    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    if store_file:
        Storage(settings.storage_root).write_bytes(Storage.checkpoint_key(sha256), data)
    facts = crud.CheckpointFacts(
        sha256=sha256, size_bytes=len(data), format="safetensors", num_classes=10, input_shape=[1, 28, 28],
        arch="small_cnn",
    )  # fmt: skip
    with session_scope(settings.database_url_resolved) as session:
        team = crud.get_or_create_team(session=session, name="red")
        checkpoint = crud.create_checkpoint(session=session, team_id=team.id, facts=facts)
        return str(crud.create_audit(session=session, team_id=team.id, checkpoint=checkpoint, config=config).id)


def _row(settings: Settings, audit_id: str) -> crud.Audit:
    with session_scope(settings.database_url_resolved) as session:
        audit = crud.get_audit_for_worker(session=session, audit_id=uuid.UUID(audit_id))
        assert audit is not None
        return audit


def test_a_whole_audit_records_everything_and_redelivered_tasks_change_nothing(settings: Settings) -> None:
    audit_id = _audit(settings, FAST)
    orchestrate_audit.delay(audit_id)
    audit = _row(settings, audit_id)
    assert audit.status == AuditStatus.succeeded, audit.error
    assert (audit.progress_done, audit.progress_total) == (10, 10)
    assert audit.verdict is not None and 0.0 <= (audit.probability or 0.0) <= 1.0 and audit.device == "cpu"
    folder = settings.storage_root / "audits" / audit_id
    report = json.loads((folder / REPORT_FILE).read_text())
    assert report["verdict"] == audit.verdict.value and len(report["classes"]) == 10
    assert audit.borderline == report["borderline"] and audit.borderline is not None  # our detector: a bool
    assert all((folder / c["map_file"]).is_file() and (folder / c["heatmap_file"]).is_file() for c in report["classes"])
    with session_scope(settings.database_url_resolved) as session:
        results = crud.list_class_results(session=session, audit_id=uuid.UUID(audit_id))
        assert [r.class_index for r in results] == list(range(10)) and all(r.score is not None for r in results)

    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    compute_maps(audit_id, [0, 1, 2])  # messages delivered again after the audit finished
    finalize_audit(audit_id)
    orchestrate_audit(audit_id)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps
    assert _row(settings, audit_id).status == AuditStatus.succeeded


def test_a_resumed_audit_computes_only_missing_classes(settings: Settings) -> None:
    audit_id = _audit(settings, FAST)
    compute_maps(audit_id, [0, 1])  # what a worker finished before it was killed
    folder = settings.storage_root / "audits" / audit_id
    early = {p.name: p.stat().st_mtime_ns for p in folder.glob("map_*.safetensors")}
    orchestrate_audit.delay(audit_id)
    assert _row(settings, audit_id).status == AuditStatus.succeeded
    assert {name: (folder / name).stat().st_mtime_ns for name in early} == early


def test_a_missing_checkpoint_file_fails_the_audit_with_what_to_do(settings: Settings) -> None:
    audit_id = _audit(settings, FAST, store_file=False)
    orchestrate_audit.delay(audit_id)
    audit = _row(settings, audit_id)
    assert audit.status == AuditStatus.failed
    assert audit.error is not None and "missing from storage; upload it again" in audit.error


def test_a_config_this_worker_cannot_run_fails_with_the_reason(settings: Settings) -> None:
    audit_id = _audit(settings, {"saliency": {"iterations": 5, "warp_speed": 9}})
    orchestrate_audit.delay(audit_id)
    audit = _row(settings, audit_id)
    assert audit.status == AuditStatus.failed and audit.error is not None and "warp_speed" in audit.error


class _Killed(BaseException):
    """What a SIGKILLed worker looks like from the task: it stops, and no exception handler runs."""


def test_a_class_whose_worker_keeps_dying_fails_the_audit_instead_of_looping(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKDOOR_AUDIT_TASK_MAX_ATTEMPTS", "2")
    get_settings.cache_clear()
    audit_id = _audit(settings, FAST)
    starts: list[list[int]] = []

    def killed(*_args: Any, classes: list[int], **_kwargs: Any) -> None:
        starts.append(classes)
        raise _Killed

    monkeypatch.setattr("worker.saliency.engine.compute_class_maps", killed)
    for _ in range(2):  # the message is redelivered after each death
        with pytest.raises(_Killed):
            compute_maps(audit_id, [4, 5])
        assert _row(settings, audit_id).status != AuditStatus.failed
    compute_maps(audit_id, [4, 5])  # the third delivery
    assert starts == [[4, 5], [4, 5]], "the third delivery must not start the computation again"
    audit = _row(settings, audit_id)
    assert audit.status == AuditStatus.failed and audit.error is not None
    assert "classes [4, 5] were started 2 times without finishing" in audit.error
    assert "saliency.class_batch" in audit.error


def test_progress_moves_while_a_group_is_computed_and_ends_on_whole_classes(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every engine step reports (interval 0): workers add their in-flight share while optimising and
    take it back class by class as results are recorded, so nothing is left once the audit is done."""
    monkeypatch.setattr(tasks._InFlightProgress, "interval", 0.0)
    changes: list[float] = []
    add = crud.add_partial_progress

    def spy(*, session: Any, audit_id: uuid.UUID, classes: float) -> None:
        changes.append(classes)
        add(session=session, audit_id=audit_id, classes=classes)

    monkeypatch.setattr(crud, "add_partial_progress", spy)
    audit_id = _audit(settings, FAST)
    orchestrate_audit.delay(audit_id)
    audit = _row(settings, audit_id)
    assert audit.status == AuditStatus.succeeded, audit.error
    gains = [c for c in changes if c > 0]
    # 3 groups (4 + 4 + 2 classes) of 12 steps each; the last step of a group is not reported
    assert len(gains) == 3 * 11 and max(gains) < 1
    assert sum(changes) == pytest.approx(0.0, abs=1e-9) and audit.progress_partial == pytest.approx(0.0, abs=1e-9)
    assert Progress.of(audit).fraction == 1.0


def test_in_flight_share_counts_toward_the_fraction(settings: Settings) -> None:
    audit_id = uuid.UUID(_audit(settings, FAST))
    progress = tasks._InFlightProgress(audit_id, classes=4)
    progress.interval = 0.0
    progress.step(5, 10)  # half the steps of 4 classes: 2 classes' worth
    assert Progress.of(_row(settings, str(audit_id))).fraction == pytest.approx(0.2)
    with session_scope(settings.database_url_resolved) as session:
        crud.upsert_class_result(
            session=session, audit_id=audit_id, class_index=0, success_rate=1.0, stability=1.0, map_key="k"
        )
        progress.hand_over_one(session)  # the finished class moves from in flight to done in one commit
    audit = _row(settings, str(audit_id))
    assert (audit.progress_done, audit.progress_partial) == (1, pytest.approx(1.5))
    assert Progress.of(audit).fraction == pytest.approx(0.25)
