"""The SQL schema (SQLAlchemy Core), shared by ``sql.py`` and the Alembic migrations.

Columns ending in ``_enc`` hold ciphertext from :mod:`tether.store.crypto`; plaintext
secrets never reach the database. Everything keyed by a server has a foreign key to
``servers`` with ``ON DELETE CASCADE``; credentials and audit events do not (a credential
outlives the servers using it, and the audit log outlives everything).

Change the tables only together with a new migration in ``migrations/versions/``; the test
suite fails when autogenerate finds a difference.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

__all__ = ["UTCDateTime", "metadata"]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores naive text otherwise)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        """Normalise to UTC; SQLite gets it naive, since it cannot keep the zone."""
        if value is None:
            return None
        value = (
            value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        )
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Return aware UTC."""
        if value is None:
            return None
        if not isinstance(value, datetime):  # pragma: no cover - driver contract
            raise TypeError(f"expected a datetime from the driver, got {type(value)}")
        return (
            value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        )


_ID = sa.String(255)
_TS = UTCDateTime()


def _server_fk(*, primary_key: bool = False) -> sa.Column[str]:
    return sa.Column(
        "server_id",
        _ID,
        sa.ForeignKey("servers.id", ondelete="CASCADE"),
        primary_key=primary_key,
        nullable=False,
    )


servers = sa.Table(
    "servers",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("name_key", sa.String(100), nullable=False, unique=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("timeout_seconds", sa.Float, nullable=False),
    sa.Column("auth_mode", sa.String(16), nullable=False),
    sa.Column("header_name", sa.String(100)),
    sa.Column("header_scheme", sa.String(100)),
    sa.Column("credential_id", _ID),
    sa.Column("oauth", sa.JSON, nullable=False),
    sa.Column("allow_networks", sa.JSON, nullable=False),
    sa.Column("ca_bundle", sa.Text),
    sa.Column("created_at", _TS),
    sa.Column("updated_at", _TS),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("grant_epoch", sa.Integer, nullable=False, server_default="0"),  # 0003
)

credentials = sa.Table(
    "credentials",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("name_key", sa.String(100), nullable=False, unique=True),
    sa.Column("value_enc", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("created_at", _TS),
    sa.Column("updated_at", _TS),
)

discovery = sa.Table(
    "discovery",
    metadata,
    _server_fk(primary_key=True),
    sa.Column("resource", sa.Text, nullable=False),
    sa.Column("resource_metadata_url", sa.Text),
    sa.Column("authorization_servers", sa.JSON, nullable=False),
    sa.Column("scopes_supported", sa.JSON, nullable=False),
    sa.Column("issuer", sa.Text, nullable=False),
    sa.Column("as_metadata", sa.JSON, nullable=False),
    sa.Column("as_metadata_url", sa.Text, nullable=False),
    sa.Column("fetched_at", _TS, nullable=False),
)

client_registrations = sa.Table(
    "client_registrations",
    metadata,
    _server_fk(primary_key=True),
    sa.Column("issuer", sa.String(1000), primary_key=True),
    sa.Column("client_id", sa.Text, nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("auth_method", sa.String(32), nullable=False),
    sa.Column("client_secret_enc", sa.Text),
    sa.Column("redirect_uri", sa.Text),
    sa.Column("client_secret_expires_at", _TS),
    sa.Column("registration_access_token_enc", sa.Text),
    sa.Column("registration_client_uri", sa.Text),
    sa.Column("client_metadata", sa.JSON, nullable=False),
    sa.Column("created_at", _TS),
)

connections = sa.Table(
    "connections",
    metadata,
    _server_fk(primary_key=True),
    sa.Column("subject", _ID, primary_key=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("access_token_enc", sa.Text),
    sa.Column("refresh_token_enc", sa.Text),
    sa.Column("token_type", sa.String(100), nullable=False),
    sa.Column("expires_at", _TS),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("required_scopes", sa.JSON, nullable=False),
    sa.Column("issuer", sa.Text),
    sa.Column("client_id", sa.Text),
    sa.Column("resource", sa.Text),
    sa.Column("connected_by", _ID),
    sa.Column("connected_at", _TS),
    sa.Column("refreshed_at", _TS),
    sa.Column("last_error_code", sa.String(100)),
    sa.Column("last_error", sa.Text),
    sa.Column("last_error_at", _TS),
    sa.Column("updated_at", _TS),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("dpop_key_enc", sa.Text),  # revision 0002 (RFC 9449 key, sealed)
    sa.Column("retry_at", _TS),  # revision 0003: transient refresh failure back-off
    sa.Column("grant_epoch", sa.Integer, nullable=False, server_default="0"),  # 0003
)

# revision 0003: cross-process leases (refresh, registration), one short statement each
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("key", _ID, primary_key=True),
    sa.Column("holder", _ID, nullable=False),
    sa.Column("expires_at", _TS, nullable=False),
)

pending_authorizations = sa.Table(
    "pending_authorizations",
    metadata,
    sa.Column("state", _ID, primary_key=True),
    _server_fk(),
    sa.Column("subject", _ID, nullable=False),
    sa.Column("user_id", _ID),
    sa.Column("code_verifier_enc", sa.Text, nullable=False),
    sa.Column("issuer", sa.Text, nullable=False),
    sa.Column("resource", sa.Text),
    sa.Column("redirect_uri", sa.Text, nullable=False),
    sa.Column("client_id", sa.Text, nullable=False),
    sa.Column("scopes", sa.Text),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("expires_at", _TS, nullable=False, index=True),
    sa.Column("server_version", sa.Integer, nullable=False),
    sa.Column("discovery", sa.JSON),  # revision 0003: this connect's own discovery
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", _TS, nullable=False),
    sa.Column("actor", _ID),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("target_type", sa.String(50), nullable=False),
    sa.Column("target_id", _ID),
    sa.Column("server_id", _ID, index=True),
    sa.Column("before", sa.JSON),
    sa.Column("after", sa.JSON),
    sa.Column("detail", sa.Text),
)

tool_cache = sa.Table(
    "tool_cache",
    metadata,
    _server_fk(primary_key=True),
    sa.Column("subject", _ID, primary_key=True),
    sa.Column("tools", sa.JSON, nullable=False),
    sa.Column("fetched_at", _TS, nullable=False),
    sa.Column("protocol_version", sa.String(100)),
    sa.Column("ttl_ms", sa.BigInteger),
)

server_health = sa.Table(
    "server_health",
    metadata,
    _server_fk(primary_key=True),
    sa.Column("subject", _ID, primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("checked_at", _TS),
    sa.Column("tools_synced_at", _TS),
    sa.Column("protocol_version", sa.String(100)),
    sa.Column("capabilities", sa.JSON, nullable=False),
)

toolsets = sa.Table(
    "toolsets",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("name_key", sa.String(100), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("created_at", _TS),
    sa.Column("updated_at", _TS),
    sa.Column("version", sa.Integer, nullable=False),
)

toolset_entries = sa.Table(
    "toolset_entries",
    metadata,
    sa.Column(
        "toolset_id",
        _ID,
        sa.ForeignKey("toolsets.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    _server_fk(primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("tools", sa.JSON),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("name_key", sa.String(100), nullable=False, unique=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("app", sa.String(100)),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("revoked_at", _TS),
)
