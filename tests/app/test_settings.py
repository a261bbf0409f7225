from pathlib import Path

import pytest
from pydantic import ValidationError

from app.core.settings import Settings


def test_embedded_defaults_live_under_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "BROKER_URL", "STORAGE_DIR", "RESULT_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(data_dir=tmp_path)
    assert settings.database_url_resolved == f"sqlite:///{tmp_path / 'backdoor-audit.sqlite3'}"
    assert settings.broker_url_resolved == "filesystem://"
    assert settings.storage_root == tmp_path / "storage"
    assert settings.result_backend_resolved == f"file://{tmp_path / 'results'}"
    settings.ensure_dirs()
    assert (tmp_path / "broker").is_dir() and (tmp_path / "storage").is_dir() and (tmp_path / "results").is_dir()


def test_environment_switches_to_postgres_and_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKDOOR_AUDIT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg2://u:s3cret@db/audit")
    monkeypatch.setenv("BROKER_URL", "redis://redis:6379/0")
    monkeypatch.setenv("STORAGE_DIR", "/srv/artifacts")
    settings = Settings()
    assert settings.data_dir == tmp_path
    assert settings.database_url_resolved == "postgresql+psycopg2://u:s3cret@db/audit"
    assert settings.result_backend_resolved == "redis://redis:6379/0"  # chords need a backend: Redis serves both
    assert settings.storage_root == Path("/srv/artifacts")
    assert settings.visibility_timeout_s > settings.task_time_limit_s


def test_soft_time_limit_must_leave_room_before_the_hard_one() -> None:
    with pytest.raises(ValidationError, match="TASK_SOFT_TIME_LIMIT_S must be below"):
        Settings(task_soft_time_limit_s=100, task_time_limit_s=100)


def test_stall_timeout_outlasts_running_tasks_and_redelivery() -> None:
    with pytest.raises(ValidationError, match="STALL_TIMEOUT_S must exceed TASK_TIME_LIMIT_S"):
        Settings(stall_timeout_s=3900)
    default = Settings()
    assert default.stall_timeout_resolved > default.visibility_timeout_s > default.task_time_limit_s
    assert Settings(stall_timeout_s=4000).stall_timeout_resolved == 4000


def test_production_refuses_placeholder_database_passwords() -> None:
    with pytest.raises(ValidationError, match="placeholder password"):
        Settings(environment="production", database_url="postgresql://postgres:changethis@db/audit")
    ok = Settings(environment="production", database_url="postgresql://postgres:Zq81-long@db/audit")
    assert ok.environment == "production"
