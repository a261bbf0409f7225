"""initial schema

Revision ID: 50a10baf84d9
Revises:
Create Date: 2026-11-26 06:50:58.415912
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "50a10baf84d9"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams")),
        sa.UniqueConstraint("name", name=op.f("uq_teams_name")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], name=op.f("fk_api_keys_team_id_teams"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_team_id"), ["team_id"], unique=False)

    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("arch", sa.String(length=100), nullable=True),
        sa.Column("num_classes", sa.Integer(), nullable=False),
        sa.Column("input_shape", sa.JSON(), nullable=False),
        sa.Column("mean", sa.JSON(), nullable=True),
        sa.Column("std", sa.JSON(), nullable=True),
        sa.Column("class_names", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_checkpoints_team_id_teams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
        sa.UniqueConstraint("team_id", "sha256", name="uq_checkpoints_team_id_sha256"),
    )
    with op.batch_alter_table("checkpoints", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_checkpoints_sha256"), ["sha256"], unique=False)
        batch_op.create_index(batch_op.f("ix_checkpoints_team_id"), ["team_id"], unique=False)

    op.create_table(
        "audits",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("checkpoint_id", sa.Uuid(), nullable=True),
        sa.Column("checkpoint_sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "status",
            sa.Enum("queued", "running", "succeeded", "failed", name="audit_status", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("progress_done", sa.Integer(), nullable=False),
        sa.Column("progress_total", sa.Integer(), nullable=False),
        sa.Column(
            "verdict",
            sa.Enum("clean", "suspicious", "backdoored", name="verdict", native_enum=False, length=16),
            nullable=True,
        ),
        sa.Column("probability", sa.Float(), nullable=True),
        sa.Column("suspected_classes", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("device", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name=op.f("fk_audits_checkpoint_id_checkpoints"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], name=op.f("fk_audits_team_id_teams"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audits")),
    )
    with op.batch_alter_table("audits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audits_checkpoint_id"), ["checkpoint_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_audits_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audits_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_audits_team_id"), ["team_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_audits_verdict"), ["verdict"], unique=False)

    op.create_table(
        "class_results",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("audit_id", sa.Uuid(), nullable=False),
        sa.Column("class_index", sa.Integer(), nullable=False),
        sa.Column("success_rate", sa.Float(), nullable=False),
        sa.Column("stability", sa.Float(), nullable=False),
        sa.Column("map_key", sa.String(length=300), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("suspected", sa.Boolean(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["audit_id"], ["audits.id"], name=op.f("fk_class_results_audit_id_audits"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_class_results")),
        sa.UniqueConstraint("audit_id", "class_index", name="uq_class_results_audit_id_class_index"),
    )
    with op.batch_alter_table("class_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_class_results_audit_id"), ["audit_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("class_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_class_results_audit_id"))

    op.drop_table("class_results")
    with op.batch_alter_table("audits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audits_verdict"))
        batch_op.drop_index(batch_op.f("ix_audits_team_id"))
        batch_op.drop_index(batch_op.f("ix_audits_status"))
        batch_op.drop_index(batch_op.f("ix_audits_created_at"))
        batch_op.drop_index(batch_op.f("ix_audits_checkpoint_id"))

    op.drop_table("audits")
    with op.batch_alter_table("checkpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_checkpoints_team_id"))
        batch_op.drop_index(batch_op.f("ix_checkpoints_sha256"))

    op.drop_table("checkpoints")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_team_id"))

    op.drop_table("api_keys")
    op.drop_table("teams")
