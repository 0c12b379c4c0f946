"""Leases, refresh back-off and grant epochs.

``leases``, ``connections.retry_at``, ``servers.grant_epoch`` and
``connections.grant_epoch``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

A lease row is taken and released with one short statement each (``store/lease.py``),
so no database connection is held while the holder talks to an authorization server.
``retry_at`` is when a connection whose refresh failed transiently may be tried again.
A server's ``grant_epoch`` moves in the same write as a change that invalidates its
grants; a connection whose epoch differs is never used, only revoked and cleared.
``pending_authorizations.discovery`` holds what a connect discovered until it completes.
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
        batch.add_column(_epoch())
    with op.batch_alter_table("servers") as batch:
        batch.add_column(_epoch())
    with op.batch_alter_table("pending_authorizations") as batch:
        batch.add_column(sa.Column("discovery", sa.JSON(), nullable=True))


def _epoch() -> sa.Column[int]:
    return sa.Column("grant_epoch", sa.Integer(), server_default="0", nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("pending_authorizations") as batch:
        batch.drop_column("discovery")
    with op.batch_alter_table("servers") as batch:
        batch.drop_column("grant_epoch")
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("grant_epoch")
        batch.drop_column("retry_at")
    op.drop_table("leases")
