"""``keys create``, ``migrate`` and the start-up steps of ``serve`` (the live server is in tests/integration)."""

from __future__ import annotations

import stat
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from app import crud
from app.cli import main
from app.cli.serve import BOOTSTRAP_KEY_FILE, BOOTSTRAP_TEAM, ensure_api_key, requeue_unfinished_audits
from app.core.db import migrate_database, session_scope
from app.core.queue import CPU_QUEUE, AuditQueue
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


@pytest.mark.parametrize("command", [["migrate"], ["keys", "create", "--team", "red"], ["serve", "--port", "1"]])
def test_an_unreachable_database_is_one_line_and_exit_2_in_every_command(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """keys create and serve used to let OperationalError escape as a traceback (exit 1)."""
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg2://nobody:hunter2@127.0.0.1:1/none")
    assert main([*command, "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: cannot use the database postgresql+psycopg2://nobody:***@")
    assert "Connection refused" in err and "check DATABASE_URL" in err and "hunter2" not in err


def test_an_embedded_database_that_cannot_be_opened_names_the_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "backdoor-audit.sqlite3").mkdir()  # SQLite cannot open a folder as its file
    assert main(["keys", "create", "--team", "red", "--data-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"error: cannot use the database sqlite:///{tmp_path}/backdoor-audit.sqlite3 (unable to open database file); "
        "check that --data-dir (or $BACKDOOR_AUDIT_DATA_DIR) is a writable folder\n"
    )


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


def test_resume_resends_unfinished_audits_and_clears_a_killed_workers_progress_share(
    service_settings: Settings, make_checkpoint: Callable[..., uuid.UUID]
) -> None:
    """A worker killed mid-group never takes back its in-flight share; serve's resume (no worker running
    yet) drops it, so the progress bar does not start ahead of the resent audit. Real filesystem broker."""
    with session_scope(service_settings.database_url_resolved) as session:
        team = crud.get_or_create_team(session=session, name="red")
    checkpoint_id = make_checkpoint(team.id)
    with session_scope(service_settings.database_url_resolved) as session:
        checkpoint = crud.get_checkpoint(session=session, team_id=team.id, checkpoint_id=checkpoint_id)
        assert checkpoint is not None
        audit_id = crud.create_audit(session=session, team_id=team.id, checkpoint=checkpoint, config={}).id
        crud.add_partial_progress(session=session, audit_id=audit_id, classes=2.5)
    queue = AuditQueue(service_settings)

    assert requeue_unfinished_audits(service_settings, queue) == 1

    with session_scope(service_settings.database_url_resolved) as session:
        audit = crud.get_audit_for_worker(session=session, audit_id=audit_id)
        assert audit is not None and audit.progress_partial == 0.0
    with queue.celery.connection_for_write() as connection:
        message = connection.default_channel.basic_get(CPU_QUEUE)
    assert message is not None and str(audit_id) in message.body.decode()
