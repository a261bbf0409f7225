"""One validated settings object for the API, the workers and the CLI.

Every deployment runs the same code; only these settings differ. With nothing set, everything lives
under one data directory (SQLite, a filesystem broker, local artifacts): the embedded default. Setting
``DATABASE_URL``, ``BROKER_URL`` and ``STORAGE_DIR`` switches to Postgres, Redis and a shared volume.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024

# Passwords that appear in examples and must never reach a production database URL.
PLACEHOLDER_PASSWORDS = frozenset({"changethis", "changeme", "password", "postgres", "secret"})


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/backdoor-audit`` (``~/.local/share/backdoor-audit``): per user, survives reboots."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "backdoor-audit"


def _env(name: str) -> AliasChoices:
    """Accept both the short, conventional name (``DATABASE_URL``) and the prefixed one."""
    return AliasChoices(name, f"BACKDOOR_AUDIT_{name}")


class Settings(BaseSettings):
    """Deployment settings, read from the environment once at start."""

    model_config = SettingsConfigDict(env_prefix="BACKDOOR_AUDIT_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = Field(default=None, validation_alias=_env("DATABASE_URL"))
    broker_url: str | None = Field(default=None, validation_alias=_env("BROKER_URL"))
    result_backend: str | None = Field(default=None, validation_alias=_env("RESULT_BACKEND"))
    storage_dir: Path | None = Field(default=None, validation_alias=_env("STORAGE_DIR"))

    max_checkpoint_bytes: int = Field(default=512 * MIB, gt=0)
    # "inline": the API process imports the intake code lazily and validates in its threadpool (needs torch);
    # "queue": a `cpu` worker validates (the torch-free API image); "auto": inline when torch is installed.
    checkpoint_validation: Literal["auto", "inline", "queue"] = "auto"
    validation_timeout_s: float = Field(default=120.0, gt=0)

    class_group_size: int = Field(default=16, ge=1)  # classes per compute_maps task (one chord member)
    task_soft_time_limit_s: int = Field(default=3600, gt=0)
    task_time_limit_s: int = Field(default=3900, gt=0)
    task_max_retries: int = Field(default=3, ge=0)
    # starts of one class's map computation before the audit fails: a worker killed mid-task (the host's
    # OOM killer, a crash) raises nothing, and its redelivered task would be killed again forever
    task_max_attempts: int = Field(default=3, ge=1)
    # an unfinished audit with nothing recorded for this long is sent again (its messages were lost);
    # unset: the broker's own redelivery time plus 10 minutes. Must outlast the longest task.
    stall_timeout_s: int | None = Field(default=None, gt=0)
    reap_interval_s: int = Field(default=300, gt=0)  # how often the beat runs the reaper
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda", "cuda:1", ...
    model_cache_size: int = Field(default=2, ge=1)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.task_soft_time_limit_s >= self.task_time_limit_s:
            raise ValueError(
                "TASK_SOFT_TIME_LIMIT_S must be below TASK_TIME_LIMIT_S so a task can record its failure "
                f"before it is killed (got {self.task_soft_time_limit_s} >= {self.task_time_limit_s})"
            )
        if self.stall_timeout_s is not None and self.stall_timeout_s <= self.task_time_limit_s:
            raise ValueError(
                "STALL_TIMEOUT_S must exceed TASK_TIME_LIMIT_S, or an audit whose task is still running would be "
                f"sent again and computed twice (got {self.stall_timeout_s} <= {self.task_time_limit_s})"
            )
        if self.environment == "production":
            password = urlsplit(self.database_url_resolved).password
            if password in PLACEHOLDER_PASSWORDS:
                raise ValueError(
                    f"DATABASE_URL uses the placeholder password {password!r} in production; "
                    "set a real secret (e.g. POSTGRES_PASSWORD in the environment)"
                )
        return self

    @property
    def database_url_resolved(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'backdoor-audit.sqlite3'}"

    @property
    def broker_url_resolved(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_folder(self) -> Path:
        """Message folder of the serverless filesystem broker (used only when BROKER_URL is unset)."""
        return self.data_dir / "broker"

    @property
    def result_backend_resolved(self) -> str:
        """Where chord members report: Redis alongside a Redis broker, else files next to the broker."""
        if self.result_backend:
            return self.result_backend
        broker = self.broker_url_resolved
        if broker.startswith(("redis://", "rediss://")):
            return broker
        return f"file://{self.data_dir / 'results'}"

    @property
    def storage_root(self) -> Path:
        return self.storage_dir or self.data_dir / "storage"

    @property
    def visibility_timeout_s(self) -> int:
        """Redis redelivers unacked tasks after this; it must outlast the longest task or work runs twice."""
        return self.task_time_limit_s + 600

    @property
    def stall_timeout_resolved(self) -> int:
        """Idle time after which the reaper sends an unfinished audit again."""
        return self.stall_timeout_s or self.visibility_timeout_s + 600

    def ensure_dirs(self) -> None:
        """Create the local folders this configuration writes to (idempotent)."""
        folders = [self.storage_root]
        if self.database_url is None:
            folders.append(self.data_dir)
        if self.broker_url is None:
            folders.append(self.broker_folder)
        if self.result_backend_resolved.startswith("file://"):
            folders.append(Path(self.result_backend_resolved.removeprefix("file://")))
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once; tests build their own ``Settings`` instead."""
    return Settings()
