"""The Alembic migrations build exactly the models' schema, and downgrade cleanly, on Postgres and SQLite."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app.core.db import migrate_database
from app.models import Base

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
