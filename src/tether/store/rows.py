"""Records ⇄ SQL rows for the tables in ``schema.py``.

Secret fields are sealed on the way in and opened on the way out with the record's
identity (``sealing.py``); a column ending in ``_enc`` never holds plaintext.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tether.store.base import (
    AuditEvent,
    ClientRegistration,
    Connection,
    CredentialRecord,
    DiscoveryRecord,
    OAuthSettings,
    PendingAuthorization,
    ServerHealth,
    ServerRecord,
    ToolCacheEntry,
    Toolset,
    ToolsetEntry,
)
from tether.store.crypto import KeyRing
from tether.store.rules import name_key
from tether.store.sealing import (
    connection_ref,
    credential_ref,
    pending_ref,
    registration_ref,
)

Row = dict[str, Any]

_OAUTH_FIELDS = frozenset(f.name for f in dataclasses.fields(OAuthSettings))


def _plain(mapping: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if mapping is None else dict(mapping)


def server_row(server: ServerRecord) -> Row:
    """Columns of ``servers`` (without ``version``, which the store sets)."""
    oauth = dataclasses.asdict(server.oauth)
    return {
        "id": server.id,
        "name": server.name,
        "name_key": name_key(server.name),
        "url": server.url,
        "description": server.description,
        "enabled": server.enabled,
        "timeout_seconds": server.timeout_seconds,
        "auth_mode": server.auth_mode,
        "header_name": server.header_name,
        "header_scheme": server.header_scheme,
        "credential_id": server.credential_id,
        "oauth": oauth,
        "allow_networks": list(server.allow_networks),
        "ca_bundle": server.ca_bundle,
        "created_at": server.created_at,
        "updated_at": server.updated_at,
        "grant_epoch": server.grant_epoch,
    }


def server_record(row: Mapping[Any, Any]) -> ServerRecord:
    """Inverse of :func:`server_row`; unknown OAuth keys (from newer code) are ignored."""
    oauth = {k: v for k, v in row["oauth"].items() if k in _OAUTH_FIELDS}
    return ServerRecord(
        id=row["id"],
        name=row["name"],
        url=row["url"],
        description=row["description"],
        enabled=row["enabled"],
        timeout_seconds=row["timeout_seconds"],
        auth_mode=row["auth_mode"],
        header_name=row["header_name"],
        header_scheme=row["header_scheme"],
        credential_id=row["credential_id"],
        oauth=OAuthSettings(**oauth),
        allow_networks=tuple(row["allow_networks"]),
        ca_bundle=row["ca_bundle"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
        grant_epoch=row["grant_epoch"],
    )


def credential_row(ring: KeyRing, credential: CredentialRecord) -> Row:
    """Columns of ``credentials``, value sealed."""
    return {
        "id": credential.id,
        "name": credential.name,
        "name_key": name_key(credential.name),
        "value_enc": ring.encrypt(
            credential.value.get_secret_value(), credential_ref(credential.id)
        ),
        "description": credential.description,
        "created_at": credential.created_at,
        "updated_at": credential.updated_at,
    }


def credential_record(ring: KeyRing, row: Mapping[Any, Any]) -> CredentialRecord:
    """Inverse of :func:`credential_row`."""
    value = ring.decrypt_optional(row["value_enc"], credential_ref(row["id"]))
    if value is None:  # pragma: no cover - the column is NOT NULL
        raise ValueError("credential without a value")
    return CredentialRecord(
        id=row["id"],
        name=row["name"],
        value=value,
        description=row["description"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def discovery_row(record: DiscoveryRecord) -> Row:
    """Columns of ``discovery``."""
    return {
        "server_id": record.server_id,
        "resource": record.resource,
        "resource_metadata_url": record.resource_metadata_url,
        "authorization_servers": list(record.authorization_servers),
        "scopes_supported": list(record.scopes_supported),
        "issuer": record.issuer,
        "as_metadata": dict(record.as_metadata),
        "as_metadata_url": record.as_metadata_url,
        "fetched_at": record.fetched_at,
    }


def discovery_record(row: Mapping[Any, Any]) -> DiscoveryRecord:
    """Inverse of :func:`discovery_row`."""
    return DiscoveryRecord(
        server_id=row["server_id"],
        resource=row["resource"],
        resource_metadata_url=row["resource_metadata_url"],
        authorization_servers=tuple(row["authorization_servers"]),
        scopes_supported=tuple(row["scopes_supported"]),
        issuer=row["issuer"],
        as_metadata=row["as_metadata"],
        as_metadata_url=row["as_metadata_url"],
        fetched_at=row["fetched_at"],
    )


def registration_row(ring: KeyRing, reg: ClientRegistration, now: datetime) -> Row:
    """Columns of ``client_registrations``, secrets sealed."""

    def ref(field: str) -> Any:
        return registration_ref(reg.server_id, reg.issuer, field)

    return {
        "server_id": reg.server_id,
        "issuer": reg.issuer,
        "client_id": reg.client_id,
        "source": reg.source,
        "auth_method": reg.auth_method,
        "client_secret_enc": ring.encrypt_optional(
            reg.client_secret, ref("client_secret")
        ),
        "redirect_uri": reg.redirect_uri,
        "client_secret_expires_at": reg.client_secret_expires_at,
        "registration_access_token_enc": ring.encrypt_optional(
            reg.registration_access_token, ref("registration_access_token")
        ),
        "registration_client_uri": reg.registration_client_uri,
        "client_metadata": dict(reg.metadata),
        "created_at": reg.created_at or now,
    }


def registration_record(ring: KeyRing, row: Mapping[Any, Any]) -> ClientRegistration:
    """Inverse of :func:`registration_row`."""

    def ref(field: str) -> Any:
        return registration_ref(row["server_id"], row["issuer"], field)

    return ClientRegistration(
        server_id=row["server_id"],
        issuer=row["issuer"],
        client_id=row["client_id"],
        source=row["source"],
        auth_method=row["auth_method"],
        client_secret=ring.decrypt_optional(
            row["client_secret_enc"], ref("client_secret")
        ),
        redirect_uri=row["redirect_uri"],
        client_secret_expires_at=row["client_secret_expires_at"],
        registration_access_token=ring.decrypt_optional(
            row["registration_access_token_enc"], ref("registration_access_token")
        ),
        registration_client_uri=row["registration_client_uri"],
        metadata=row["client_metadata"],
        created_at=row["created_at"],
    )


_CONNECTION_PLAIN = (
    "status",
    "token_type",
    "expires_at",
    "issuer",
    "client_id",
    "resource",
    "connected_by",
    "connected_at",
    "refreshed_at",
    "last_error_code",
    "last_error",
    "last_error_at",
    "updated_at",
    "retry_at",
    "grant_epoch",
)


def connection_row(ring: KeyRing, conn: Connection) -> Row:
    """Columns of ``connections`` (without ``version``), tokens sealed."""

    def ref(field: str) -> Any:
        return connection_ref(conn.server_id, conn.subject, field)

    row: Row = {name: getattr(conn, name) for name in _CONNECTION_PLAIN}
    row.update(
        server_id=conn.server_id,
        subject=conn.subject,
        access_token_enc=ring.encrypt_optional(conn.access_token, ref("access_token")),
        refresh_token_enc=ring.encrypt_optional(
            conn.refresh_token, ref("refresh_token")
        ),
        dpop_key_enc=ring.encrypt_optional(conn.dpop_key, ref("dpop_key")),
        scopes=list(conn.scopes),
        required_scopes=list(conn.required_scopes),
    )
    return row


def connection_record(ring: KeyRing, row: Mapping[Any, Any]) -> Connection:
    """Inverse of :func:`connection_row`."""

    def ref(field: str) -> Any:
        return connection_ref(row["server_id"], row["subject"], field)

    return Connection(
        server_id=row["server_id"],
        subject=row["subject"],
        access_token=ring.decrypt_optional(
            row["access_token_enc"], ref("access_token")
        ),
        refresh_token=ring.decrypt_optional(
            row["refresh_token_enc"], ref("refresh_token")
        ),
        dpop_key=ring.decrypt_optional(row["dpop_key_enc"], ref("dpop_key")),
        scopes=tuple(row["scopes"]),
        required_scopes=tuple(row["required_scopes"]),
        version=row["version"],
        **{name: row[name] for name in _CONNECTION_PLAIN},
    )


def pending_row(
    ring: KeyRing, pending: PendingAuthorization, expires_at: datetime
) -> Row:
    """Columns of ``pending_authorizations``, PKCE verifier sealed."""
    return {
        "state": pending.state,
        "server_id": pending.server_id,
        "subject": pending.subject,
        "user_id": pending.user_id,
        "code_verifier_enc": ring.encrypt(
            pending.code_verifier.get_secret_value(), pending_ref(pending.state)
        ),
        "issuer": pending.issuer,
        "resource": pending.resource,
        "redirect_uri": pending.redirect_uri,
        "client_id": pending.client_id,
        "scopes": pending.scopes,
        "created_at": pending.created_at,
        "expires_at": expires_at,
        "server_version": pending.server_version,
        "discovery": None
        if pending.discovery is None
        else {
            **discovery_row(pending.discovery),
            "fetched_at": pending.discovery.fetched_at.isoformat(),
        },
    }


def pending_record(ring: KeyRing, row: Mapping[Any, Any]) -> PendingAuthorization:
    """Inverse of :func:`pending_row`."""
    verifier = ring.decrypt_optional(
        row["code_verifier_enc"], pending_ref(row["state"])
    )
    if verifier is None:  # pragma: no cover - the column is NOT NULL
        raise ValueError("pending authorization without a verifier")
    return PendingAuthorization(
        state=row["state"],
        server_id=row["server_id"],
        subject=row["subject"],
        user_id=row["user_id"],
        code_verifier=verifier,
        issuer=row["issuer"],
        resource=row["resource"],
        redirect_uri=row["redirect_uri"],
        client_id=row["client_id"],
        scopes=row["scopes"],
        created_at=row["created_at"],
        server_version=row["server_version"],
        discovery=None
        if row["discovery"] is None
        else discovery_record(
            {
                **row["discovery"],
                "fetched_at": datetime.fromisoformat(row["discovery"]["fetched_at"]),
            }
        ),
    )


def audit_row(event: AuditEvent) -> Row:
    """Columns of ``audit_events`` (the id is assigned by the database)."""
    return {
        "at": event.at,
        "actor": event.actor,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "server_id": event.server_id,
        "before": _plain(event.before),
        "after": _plain(event.after),
        "detail": event.detail,
    }


def audit_record(row: Mapping[Any, Any]) -> AuditEvent:
    """Inverse of :func:`audit_row`."""
    return AuditEvent(id=row["id"], **{k: row[k] for k in _AUDIT_KEYS})


_AUDIT_KEYS = (
    "at",
    "actor",
    "action",
    "target_type",
    "target_id",
    "server_id",
    "before",
    "after",
    "detail",
)


def tool_cache_row(entry: ToolCacheEntry) -> Row:
    """Columns of ``tool_cache``."""
    return {
        "server_id": entry.server_id,
        "subject": entry.subject,
        "tools": [dict(tool) for tool in entry.tools],
        "fetched_at": entry.fetched_at,
        "protocol_version": entry.protocol_version,
        "ttl_ms": entry.ttl_ms,
    }


def tool_cache_record(row: Mapping[Any, Any]) -> ToolCacheEntry:
    """Inverse of :func:`tool_cache_row`."""
    return ToolCacheEntry(
        server_id=row["server_id"],
        subject=row["subject"],
        tools=row["tools"],
        fetched_at=row["fetched_at"],
        protocol_version=row["protocol_version"],
        ttl_ms=row["ttl_ms"],
    )


def health_row(health: ServerHealth) -> Row:
    """Columns of ``server_health``."""
    row = dataclasses.asdict(health)
    row["capabilities"] = dict(health.capabilities)
    return row


def health_record(row: Mapping[Any, Any]) -> ServerHealth:
    """Inverse of :func:`health_row`."""
    return ServerHealth(**dict(row))


def toolset_row(toolset: Toolset) -> Row:
    """Columns of ``toolsets`` (without ``version``)."""
    return {
        "id": toolset.id,
        "name": toolset.name,
        "name_key": name_key(toolset.name),
        "description": toolset.description,
        "created_at": toolset.created_at,
        "updated_at": toolset.updated_at,
    }


def toolset_entry_rows(toolset: Toolset) -> list[Row]:
    """Rows of ``toolset_entries``, in order."""
    return [
        {
            "toolset_id": toolset.id,
            "server_id": entry.server_id,
            "position": position,
            "tools": None if entry.tools is None else list(entry.tools),
        }
        for position, entry in enumerate(toolset.entries)
    ]


def toolset_record(row: Mapping[Any, Any], entries: list[Mapping[Any, Any]]) -> Toolset:
    """Inverse of :func:`toolset_row` and :func:`toolset_entry_rows`."""
    ordered = sorted(entries, key=lambda e: e["position"])
    return Toolset(
        id=row["id"],
        name=row["name"],
        entries=tuple(
            ToolsetEntry(
                server_id=e["server_id"],
                tools=None if e["tools"] is None else tuple(e["tools"]),
            )
            for e in ordered
        ),
        description=row["description"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
    )
