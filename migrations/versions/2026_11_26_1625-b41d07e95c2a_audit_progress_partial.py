"""audits.progress_partial: the share of the classes in flight that workers have computed

Revision ID: b41d07e95c2a
Revises: 7c3e9d2a41f0
Create Date: 2026-11-26 16:25:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b41d07e95c2a"
down_revision: str | None = "7c3e9d2a41f0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audits") as batch:
        batch.add_column(sa.Column("progress_partial", sa.Float(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("audits") as batch:
        batch.drop_column("progress_partial")
