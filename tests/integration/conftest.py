"""Fixtures for tests against real services: a throwaway Postgres database per test session.

Postgres is expected at 127.0.0.1:5432 (``BACKDOOR_AUDIT_TEST_POSTGRES``); tests that need it skip
when it is unreachable, except under CI (``CI=true``), where ``scripts/services.sh`` has started it
and an unreachable service is a failure: a CI run that skipped every integration test would pass
having tested none (``tests/conftest.py`` does the same for the tests that skip without Redis).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from tests.conftest import service_unreachable

POSTGRES_ADMIN_URL = os.environ.get(
    "BACKDOOR_AUDIT_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A new, uniquely named database (dropped afterwards) so concurrent runs never collide."""
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"ba_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        service_unreachable(f"Postgres not reachable at {POSTGRES_ADMIN_URL}: {exc.orig}")
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        from app.core.db import dispose_engines

        dispose_engines()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(**overrides: str) -> dict[str, str]:
    """The test process's environment without any deployment setting, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if k not in DEPLOYMENT_VARIABLES and not k.startswith("BACKDOOR_AUDIT_")}
    env.update(overrides)
    return env


DEPLOYMENT_VARIABLES = {"DATABASE_URL", "BROKER_URL", "STORAGE_DIR", "RESULT_BACKEND"}
