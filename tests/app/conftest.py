"""Fixtures of the service tests: a migrated SQLite database per test, an app, teams with API keys."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app import crud
from app.core.db import migrate_database, session_scope
from app.core.queue import AuditQueue
from app.core.settings import Settings
from app.main import create_app


class RecordingQueue(AuditQueue):
    """Records what the API would send to the broker; API tests need no broker and no worker."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.enqueued: list[uuid.UUID] = []
        self.broker_error: Exception | None = None

    def enqueue_audit(self, audit_id: uuid.UUID) -> None:
        if self.broker_error is not None:
            raise self.broker_error
        self.enqueued.append(audit_id)

    def ping_broker(self) -> None:
        if self.broker_error is not None:
            raise self.broker_error


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrate once per session; each test copies the file (much faster than migrating per test)."""
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    migrate_database(f"sqlite:///{path}")
    return path


@pytest.fixture
def service_settings(tmp_path: Path, migrated_sqlite_template: Path) -> Settings:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(migrated_sqlite_template, data_dir / "backdoor-audit.sqlite3")
    settings = Settings(data_dir=data_dir, checkpoint_validation="inline", max_checkpoint_bytes=2 * 1024 * 1024)
    settings.ensure_dirs()
    return settings


@pytest.fixture
def session(service_settings: Settings) -> Iterator[Session]:
    with session_scope(service_settings.database_url_resolved) as session:
        yield session


def make_team_key(settings: Settings, name: str) -> tuple[uuid.UUID, str]:
    with session_scope(settings.database_url_resolved) as session:
        team = crud.get_or_create_team(session=session, name=name)
        return team.id, crud.create_api_key(session=session, team=team)


@pytest.fixture
def queue(service_settings: Settings) -> RecordingQueue:
    return RecordingQueue(service_settings)


@pytest.fixture
def client(service_settings: Settings, queue: RecordingQueue) -> Iterator[TestClient]:
    with TestClient(create_app(service_settings, queue)) as test_client:
        yield test_client


@pytest.fixture
def team(service_settings: Settings) -> dict[str, Any]:
    """Team "red" with its key and ready-made headers."""
    team_id, key = make_team_key(service_settings, "red")
    return {"id": team_id, "key": key, "headers": {"Authorization": f"Bearer {key}"}}


@pytest.fixture
def other_team(service_settings: Settings) -> dict[str, Any]:
    team_id, key = make_team_key(service_settings, "blue")
    return {"id": team_id, "key": key, "headers": {"Authorization": f"Bearer {key}"}}


@pytest.fixture
def make_checkpoint(service_settings: Settings) -> Callable[..., uuid.UUID]:
    """Insert a checkpoint row without intake, for tests of audits (intake is tested on real uploads)."""

    def make(team_id: uuid.UUID, *, num_classes: int = 10, sha256: str = "ab" * 32) -> uuid.UUID:
        facts = crud.CheckpointFacts(
            sha256=sha256, size_bytes=10, format="safetensors", num_classes=num_classes, input_shape=[1, 28, 28]
        )
        with session_scope(service_settings.database_url_resolved) as session:
            return crud.create_checkpoint(session=session, team_id=team_id, facts=facts).id

    return make
