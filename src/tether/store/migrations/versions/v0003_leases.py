"""Cross-process leases and refresh back-off: ``leases``, ``connections.retry_at``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

A lease row is taken and released with one short statement each (``store/lease.py``),
so no database connection is held while the holder talks to an authorization server.
``retry_at`` is when a connection whose refresh failed transiently may be tried again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_leases")),
    )
    with op.batch_alter_table("connections") as batch:
        batch.add_column(
            sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("retry_at")
    op.drop_table("leases")
