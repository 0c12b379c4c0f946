"""Connections keep a DPoP key (RFC 9449): ``connections.dpop_key_enc``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

The column holds ciphertext (``store/crypto.py``) sealed with the connection's identity,
like the tokens; ``NULL`` for connections without a sender-constrained grant.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.add_column(sa.Column("dpop_key_enc", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("dpop_key_enc")
