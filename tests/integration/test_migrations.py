"""The Alembic migrations build exactly the models' schema, and downgrade cleanly, on Postgres and SQLite."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app.core.db import migrate_database
from app.models import Base
from worker.config import AuditConfig
from worker.scoring.borderline import near_the_line

TABLES = {"teams", "api_keys", "checkpoints", "audits", "class_results"}


def _check_round_trip(url: str) -> None:
    migrate_database(url)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) >= TABLES
            drift = compare_metadata(MigrationContext.configure(connection), Base.metadata)
            assert drift == [], f"models and migrations differ: {drift}"
        migrate_database(url, "base", downgrade=True)
        with engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) & TABLES == set()
        migrate_database(url)  # and up again: the downgrade left nothing behind that blocks it
    finally:
        engine.dispose()


def test_migrations_round_trip_on_sqlite(tmp_path: Path) -> None:
    _check_round_trip(f"sqlite:///{tmp_path / 'db.sqlite3'}")


def test_migrations_round_trip_on_postgres(postgres_url: str) -> None:
    _check_round_trip(postgres_url)


# the tables as they stand at revision 063cb6f9794e (audits.borderline added, not yet backfilled)
_teams = sa.table(
    "teams", sa.column("id", sa.Uuid()), sa.column("name", sa.String()), sa.column("created_at", sa.DateTime())
)
_checkpoints = sa.table(
    "checkpoints",
    *(sa.column(name, sa.Uuid()) for name in ("id", "team_id")),
    *(sa.column(name, sa.String()) for name in ("sha256", "format")),
    *(sa.column(name, sa.Integer()) for name in ("size_bytes", "num_classes")),
    sa.column("input_shape", sa.JSON()),
    sa.column("created_at", sa.DateTime()),
)
_audits = sa.table(
    "audits",
    *(sa.column(name, sa.Uuid()) for name in ("id", "team_id", "checkpoint_id")),
    *(sa.column(name, sa.String()) for name in ("checkpoint_sha256", "status")),
    *(sa.column(name, sa.Integer()) for name in ("progress_done", "progress_total")),
    sa.column("config", sa.JSON()),
    sa.column("probability", sa.Float()),
    sa.column("borderline", sa.Boolean()),
    sa.column("created_at", sa.DateTime()),
)


def _borderlines(engine: sa.Engine) -> dict[uuid.UUID, bool | None]:
    with engine.connect() as connection:
        return {row.id: row.borderline for row in connection.execute(sa.select(_audits.c.id, _audits.c.borderline))}


def _check_borderline_backfill(url: str) -> None:
    """Migrating from 063cb6f9794e computes borderline for the succeeded audits that lack it, as the worker
    would, and leaves everything else alone."""
    default = AuditConfig().to_dict()
    low_line = AuditConfig.from_dict({"scoring": {"suspicious_at": 0.6}}).to_dict()
    unreadable = {**default, "saliency": {**default["saliency"], "a_key_of_long_ago": 1}}
    # 0.5 is near a line at 0.6 but not near the default 0.85, so the audit's own config must be read
    assert near_the_line(0.5, 0.6) and not near_the_line(0.5, 0.85)
    assert near_the_line(0.85, 0.85) and not near_the_line(0.99, 0.85)
    cases = {  # name: (status, config, probability, borderline before, borderline expected after)
        "near": ("succeeded", low_line, 0.5, None, True),
        "far": ("succeeded", default, 0.99, None, False),
        "unreadable": ("succeeded", unreadable, 0.85, None, None),
        "queued": ("queued", default, None, None, None),
        "already_set": ("succeeded", default, 0.85, False, False),
    }
    # and enough more, half of them unreadable, for the migration to go through several batches
    bulk = {
        f"bulk_{i}": ("succeeded", unreadable if i % 2 else default, 0.99, None, None if i % 2 else False)
        for i in range(1201)
    }
    cases.update(bulk)

    migrate_database(url, "base", downgrade=True)  # from whatever an earlier test left
    migrate_database(url, "063cb6f9794e")
    engine = create_engine(url)
    try:
        now = datetime.now(UTC)
        team_id, checkpoint_id, sha256 = uuid.uuid4(), uuid.uuid4(), "ab" * 32
        ids = {name: uuid.uuid4() for name in cases}
        rows: list[dict[str, Any]] = [
            {
                "id": ids[name],
                "team_id": team_id,
                "checkpoint_id": checkpoint_id,
                "checkpoint_sha256": sha256,
                "status": status,
                "progress_done": 10 if status == "succeeded" else 0,
                "progress_total": 10,
                "config": config,
                "probability": probability,
                "borderline": before,
                "created_at": now,
            }
            for name, (status, config, probability, before, _) in cases.items()
        ]
        with engine.begin() as connection:
            connection.execute(sa.insert(_teams).values(id=team_id, name="red", created_at=now))
            connection.execute(
                sa.insert(_checkpoints).values(
                    id=checkpoint_id,
                    team_id=team_id,
                    sha256=sha256,
                    format="pt",
                    size_bytes=1,
                    num_classes=10,
                    input_shape=[1, 28, 28],
                    created_at=now,
                )
            )
            connection.execute(sa.insert(_audits), rows)

        migrate_database(url)
        after = _borderlines(engine)
        expected = {ids[name]: case[4] for name, case in cases.items()}
        by_name = {name: after[ids[name]] for name in ("near", "far", "unreadable", "queued", "already_set")}
        assert by_name == {"near": True, "far": False, "unreadable": None, "queued": None, "already_set": False}
        assert after == expected

        migrate_database(url, "063cb6f9794e", downgrade=True)  # a no-op: the values stay
        assert _borderlines(engine) == expected
        migrate_database(url, "base", downgrade=True)
    finally:
        engine.dispose()


def test_borderline_backfill_on_sqlite(tmp_path: Path) -> None:
    _check_borderline_backfill(f"sqlite:///{tmp_path / 'db.sqlite3'}")


def test_borderline_backfill_on_postgres(postgres_url: str) -> None:
    _check_borderline_backfill(postgres_url)


def test_the_migrations_run_without_torch(tmp_path: Path) -> None:
    # the API image, which runs them (docker-compose's `migrate`), has no torch
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    check = (
        "import sys; from app.core.db import migrate_database; migrate_database(sys.argv[1]); "
        "assert 'torch' not in sys.modules, 'the migrations imported torch'"
    )
    subprocess.run([sys.executable, "-c", check, url], check=True)
