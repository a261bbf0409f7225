"""``keys create``, ``migrate`` and the start-up steps of ``serve`` (the live server is in tests/integration)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from app import crud
from app.cli import main
from app.cli.serve import BOOTSTRAP_KEY_FILE, BOOTSTRAP_TEAM, ensure_api_key
from app.core.db import migrate_database, session_scope
from app.core.settings import Settings


@pytest.fixture(autouse=True)
def _no_deployment_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "BROKER_URL", "STORAGE_DIR", "RESULT_BACKEND", "BACKDOOR_AUDIT_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_keys_create_prints_a_working_key_last_and_stores_only_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "create", "--team", "ml-platform", "--data-dir", str(tmp_path)]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    url = Settings(data_dir=tmp_path).database_url_resolved
    with session_scope(url) as session:
        team = crud.get_team_for_key(session=session, key=key)
        assert team is not None and team.name == "ml-platform"
    for database_file in tmp_path.glob("backdoor-audit.sqlite3*"):  # the database and its WAL
        assert key.encode() not in database_file.read_bytes()


def test_keys_create_refuses_an_empty_team(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--team", "  ", "--data-dir", str(tmp_path)]) == 2
    assert "--team must be a non-empty name" in capsys.readouterr().err


def test_migrate_reports_an_unreachable_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg2://nobody@127.0.0.1:1/none")
    assert main(["migrate", "--data-dir", str(tmp_path)]) == 2
    assert "cannot reach the database" in capsys.readouterr().err


def test_first_start_creates_one_bootstrap_key_readable_only_by_its_owner(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    settings.ensure_dirs()
    migrate_database(settings.database_url_resolved)
    key = ensure_api_key(settings)
    assert key is not None
    path = tmp_path / BOOTSTRAP_KEY_FILE
    assert path.read_text().strip() == key and stat.S_IMODE(path.stat().st_mode) == 0o600
    with session_scope(settings.database_url_resolved) as session:
        team = crud.get_team_for_key(session=session, key=key)
        assert team is not None and team.name == BOOTSTRAP_TEAM
    assert ensure_api_key(settings) is None  # keys exist: nothing new on later starts
