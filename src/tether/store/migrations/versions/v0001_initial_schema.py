"""Initial schema: every table of ``tether/store/schema.py``.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Columns ending in ``_enc`` hold ciphertext (``store/crypto.py``). Timestamps are
``DateTime(timezone=True)``; the application type ``UTCDateTime`` only normalises values.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=True),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("target_type", sa.String(length=50), nullable=False),
        sa.Column("target_id", sa.String(length=255), nullable=True),
        sa.Column("server_id", sa.String(length=255), nullable=True),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(
        op.f("ix_audit_events_server_id"), "audit_events", ["server_id"], unique=False
    )

    op.create_table(
        "credentials",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("name_key", sa.String(length=100), nullable=False),
        sa.Column("value_enc", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credentials")),
        sa.UniqueConstraint("name_key", name=op.f("uq_credentials_name_key")),
    )
    op.create_table(
        "servers",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("name_key", sa.String(length=100), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("timeout_seconds", sa.Float(), nullable=False),
        sa.Column("auth_mode", sa.String(length=16), nullable=False),
        sa.Column("header_name", sa.String(length=100), nullable=True),
        sa.Column("header_scheme", sa.String(length=100), nullable=True),
        sa.Column("credential_id", sa.String(length=255), nullable=True),
        sa.Column("oauth", sa.JSON(), nullable=False),
        sa.Column("allow_networks", sa.JSON(), nullable=False),
        sa.Column("ca_bundle", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_servers")),
        sa.UniqueConstraint("name_key", name=op.f("uq_servers_name_key")),
    )
    op.create_table(
        "toolsets",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("name_key", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_toolsets")),
        sa.UniqueConstraint("name_key", name=op.f("uq_toolsets_name_key")),
    )
    op.create_table(
        "client_registrations",
        sa.Column("server_id", sa.String(length=255), nullable=False),
        sa.Column("issuer", sa.String(length=1000), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("auth_method", sa.String(length=32), nullable=False),
        sa.Column("client_secret_enc", sa.Text(), nullable=True),
        sa.Column("redirect_uri", sa.Text(), nullable=True),
        sa.Column(
            "client_secret_expires_at", sa.DateTime(timezone=True), nullable=True
        ),
        sa.Column("registration_access_token_enc", sa.Text(), nullable=True),
        sa.Column("registration_client_uri", sa.Text(), nullable=True),
        sa.Column("client_metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["servers.id"],
            name=op.f("fk_client_registrations_server_id_servers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "server_id", "issuer", name=op.f("pk_client_registrations")
        ),
    )
    op.create_table(
        "connections",
        sa.Column("server_id", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("access_token_enc", sa.Text(), nullable=True),
        sa.Column("refresh_token_enc", sa.Text(), nullable=True),
        sa.Column("token_type", sa.String(length=100), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("required_scopes", sa.JSON(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=True),
        sa.Column("client_id", sa.Text(), nullable=True),
        sa.Column("resource", sa.Text(), nullable=True),
        sa.Column("connected_by", sa.String(length=255), nullable=True),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error_code", sa.String(length=100), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["servers.id"],
            name=op.f("fk_connections_server_id_servers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("server_id", "subject", name=op.f("pk_connections")),
    )
    op.create_table(
        "discovery",
        sa.Column("server_id", sa.String(length=255), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.Column("resource_metadata_url", sa.Text(), nullable=True),
        sa.Column("authorization_servers", sa.JSON(), nullable=False),
        sa.Column("scopes_supported", sa.JSON(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("as_metadata", sa.JSON(), nullable=False),
        sa.Column("as_metadata_url", sa.Text(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["servers.id"],
            name=op.f("fk_discovery_server_id_servers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("server_id", name=op.f("pk_discovery")),
    )
    op.create_table(
        "pending_authorizations",
        sa.Column("state", sa.String(length=255), nullable=False),
        sa.Column("server_id", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=True),
        sa.Column("code_verifier_enc", sa.Text(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("resource", sa.Text(), nullable=True),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("server_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["servers.id"],
            name=op.f("fk_pending_authorizations_server_id_servers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("state", name=op.f("pk_pending_authorizations")),
    )
    op.create_index(
        op.f("ix_pending_authorizations_expires_at"),
        "pending_authorizations",
        ["expires_at"],
        unique=False,
    )

    op.create_table(
        "server_health",
        sa.Column("server_id", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tools_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("protocol_version", sa.String(length=100), nullable=True),
        sa.Column("capabilities", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["servers.id"],
            name=op.f("fk_server_health_server_id_servers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("server_id", "subject", name=op.f("pk_server_health")),
    )
    op.create_table(
        "tool_cache",
        sa.Column("server_id", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("tools", sa.JSON(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("protocol_version", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["servers.id"],
            name=op.f("fk_tool_cache_server_id_servers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("server_id", "subject", name=op.f("pk_tool_cache")),
    )
    op.create_table(
        "toolset_entries",
        sa.Column("toolset_id", sa.String(length=255), nullable=False),
        sa.Column("server_id", sa.String(length=255), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("tools", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["servers.id"],
            name=op.f("fk_toolset_entries_server_id_servers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["toolset_id"],
            ["toolsets.id"],
            name=op.f("fk_toolset_entries_toolset_id_toolsets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "toolset_id", "server_id", name=op.f("pk_toolset_entries")
        ),
    )


def downgrade() -> None:
    op.drop_table("toolset_entries")
    op.drop_table("tool_cache")
    op.drop_table("server_health")
    op.drop_index(
        op.f("ix_pending_authorizations_expires_at"),
        table_name="pending_authorizations",
    )

    op.drop_table("pending_authorizations")
    op.drop_table("discovery")
    op.drop_table("connections")
    op.drop_table("client_registrations")
    op.drop_table("toolsets")
    op.drop_table("servers")
    op.drop_table("credentials")
    op.drop_index(op.f("ix_audit_events_server_id"), table_name="audit_events")

    op.drop_table("audit_events")
