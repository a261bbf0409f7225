"""audits.borderline: whether another saliency seed could turn the verdict (report.json's borderline)

Revision ID: 063cb6f9794e
Revises: b41d07e95c2a
Create Date: 2026-12-02 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "063cb6f9794e"
down_revision: str | None = "b41d07e95c2a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # audits finished before this column get their value from the next migration, 7b2f7f421bd3
    with op.batch_alter_table("audits") as batch:
        batch.add_column(sa.Column("borderline", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audits") as batch:
        batch.drop_column("borderline")
