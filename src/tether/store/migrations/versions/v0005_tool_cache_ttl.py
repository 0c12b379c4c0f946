"""The server's cache hint for a tool list: ``tool_cache.ttl_ms`` (HTTP7-9).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Nullable: lists fetched before, and lists from servers of a revision without cache
hints, have none (design-notes R2.5).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tool_cache") as batch:
        batch.add_column(sa.Column("ttl_ms", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tool_cache") as batch:
        batch.drop_column("ttl_ms")
