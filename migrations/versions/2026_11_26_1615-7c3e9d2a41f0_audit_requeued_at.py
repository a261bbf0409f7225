"""audits.requeued_at: when the reaper last sent a stalled audit again

Revision ID: 7c3e9d2a41f0
Revises: 50a10baf84d9
Create Date: 2026-11-26 16:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7c3e9d2a41f0"
down_revision: str | None = "50a10baf84d9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audits") as batch:
        batch.add_column(sa.Column("requeued_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audits") as batch:
        batch.drop_column("requeued_at")
