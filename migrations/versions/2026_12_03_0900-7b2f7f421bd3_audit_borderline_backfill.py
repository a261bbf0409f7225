"""audits.borderline for the audits that succeeded before the column existed, as the worker computes it

Every succeeded audit keeps its probability and its full normalised config, so its borderline is
``near_the_line(probability, AuditConfig.from_dict(config).scoring.suspicious_at)``, the worker's own
formula (``worker.report.build_report``). An audit whose config no longer parses keeps NULL.

Revision ID: 7b2f7f421bd3
Revises: 063cb6f9794e
Create Date: 2026-12-03 09:00:00
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "7b2f7f421bd3"
down_revision: str | None = "063cb6f9794e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 500

# Only the columns read or written here, so later changes to the models cannot break this migration.
audits = sa.table(
    "audits",
    sa.column("id", sa.Uuid()),
    sa.column("status", sa.String()),  # the AuditStatus enum is stored as its plain name (native_enum=False)
    sa.column("config", sa.JSON()),
    sa.column("probability", sa.Float()),
    sa.column("borderline", sa.Boolean()),
)


def upgrade() -> None:
    if context.is_offline_mode():  # the values depend on each row's config, so an --sql script cannot hold them
        return
    # Imported here, not at the top, so the migration history loads without the worker package; both are
    # torch-free, so this runs in the API image too.
    from worker.config import AuditConfig
    from worker.scoring.borderline import near_the_line

    log = logging.getLogger("alembic.runtime.migration")
    bind = op.get_bind()
    pending = sa.and_(
        audits.c.status == "succeeded",
        audits.c.probability.is_not(None),
        audits.c.borderline.is_(None),
    )
    update = (
        sa.update(audits)
        .where(audits.c.id == sa.bindparam("audit_id"), audits.c.borderline.is_(None))
        .values(borderline=sa.bindparam("value"))
    )
    done = unreadable = 0
    last = None
    while True:
        query = sa.select(audits.c.id, audits.c.config, audits.c.probability).where(pending)
        if last is not None:  # by primary key: rows left NULL (unreadable config) still match `pending`
            query = query.where(audits.c.id > last)
        rows = bind.execute(query.order_by(audits.c.id).limit(BATCH)).all()
        if not rows:
            break
        last = rows[-1].id
        values = []
        for row in rows:
            try:
                suspicious_at = AuditConfig.from_dict(row.config).scoring.suspicious_at
                values.append({"audit_id": row.id, "value": near_the_line(row.probability, suspicious_at)})
            except (ValueError, TypeError):  # a config from an older or foreign version: leave it NULL
                unreadable += 1
        if values:
            bind.execute(update, values)
            done += len(values)
    log.info(
        "backfilled audits.borderline on %d succeeded audits; %d with an unreadable config keep NULL", done, unreadable
    )


def downgrade() -> None:
    # Nothing to undo: a backfilled value is the one the worker would have written, and backfilled rows
    # cannot be told from worker-written ones, so setting them back to NULL would also erase the latter.
    pass
