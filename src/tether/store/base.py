"""Storage contracts: typed records and the Protocols the hub depends on (design-notes D1, D2).

Records are frozen dataclasses holding *plaintext* values; secrets are
:class:`pydantic.SecretStr` so a repr, traceback or log line never shows them. Each backend
encrypts every secret before it touches disk or the network (``store/crypto.py``), binding
the record's identity as associated data, and decrypts on read.

Rules every backend follows:

1. Connections are keyed by ``(server_id, subject)``; ``subject`` is ``"shared"`` or a user
   id. Writes are compare-and-set on ``version``: :meth:`ConnectionStore.save` with
   ``expected_version`` raises :class:`~tether.errors.VersionConflict` when the stored
   version differs, and returns the record with ``version + 1``.
2. Client registrations are keyed by ``(server_id, issuer)``: a new issuer means a new
   registration (design-notes D1).
3. Pending authorizations are taken once, atomically (:meth:`PendingStore.take`).
4. Backends translate their driver exceptions into :class:`~tether.errors.StorageError`
   subtypes at the seam (design-notes S6); nothing above ``store/`` sees SQLAlchemy or
   redis exceptions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import SecretStr

from tether.store.paging import Page

if TYPE_CHECKING:
    from tether.store.apikeys import ApiKeyStore
    from tether.store.listing import ConnectionListing

__all__ = [
    "SHARED",
    "AuditEvent",
    "AuditLog",
    "AuthMode",
    "ClientRegistration",
    "Connection",
    "ConnectionStatus",
    "ConnectionStore",
    "CredentialRecord",
    "CredentialStore",
    "DiscoveryRecord",
    "DiscoveryStore",
    "GrantType",
    "LeaseStore",
    "LockProvider",
    "OAuthSettings",
    "PendingAuthorization",
    "PendingStore",
    "RegistrationMode",
    "RegistrationSource",
    "RegistrationStore",
    "ServerHealth",
    "ServerRecord",
    "ServerStore",
    "Stores",
    "ToolCacheEntry",
    "ToolCacheStore",
    "Toolset",
    "ToolsetEntry",
    "ToolsetStore",
]

SHARED: str = "shared"
"""The subject of a server-wide connection made by an admin (reference behaviour)."""

AuthMode = Literal["none", "header", "oauth"]
RegistrationMode = Literal["auto", "metadata_document", "dynamic", "manual"]
RegistrationSource = Literal["manual", "dynamic", "metadata_document", "pre_registered"]
ConnectionStatus = Literal[
    "disconnected", "connected", "refresh_failed", "needs_reauth", "error"
]
TokenAuthMethod = Literal[
    "none", "client_secret_basic", "client_secret_post", "private_key_jwt"
]
GrantType = Literal[
    "authorization_code", "client_credentials", "enterprise", "jwt_bearer"
]
"""How a server's tokens are obtained: a user in a browser (``authorization_code``), the
client alone (``client_credentials``, machine to machine), or an enterprise IdP's ID-JAG
redeemed with the RFC 7523 JWT bearer grant (``enterprise``)."""


def _empty_params() -> dict[str, str | None]:
    return {}


@dataclass(frozen=True, slots=True)
class OAuthSettings:
    """A server's OAuth configuration, as an admin set it.

    Attributes:
        registration: ``auto`` picks client ID metadata document, then dynamic, then fails
            asking for a manual client; the others force one path.
        client_id: Manual client id (``registration="manual"``).
        client_secret_credential_id: Credential holding the manual client's secret.
        token_auth_method: Force a token-endpoint auth method (else negotiated).
        scopes: Space-separated scopes to request (else challenge, else PRM scopes).
        authorization_params: Extra authorize parameters; ``None`` removes a default.
        token_params: Extra token/refresh parameters; ``None`` removes a default.
        require_refresh_token: Fail the connect when no refresh token is granted.
        allow_missing_pkce_metadata: Relaxation: the AS does not advertise S256.
        authorization_server: Explicit issuer to use (else the PRM's first).
        per_user: Connections per end user instead of one shared connection.
        resource_match: Override (*Known disagreements* #3): ``prefix`` also accepts a
            PRM ``resource`` that is a same-origin parent of the server URL.
        resource_expected: Override (#3): the exact PRM ``resource`` to accept instead
            of the server URL (e.g. on another host); it is then sent as ``resource``.
        legacy_endpoints: Override (#15, ASM-9): without protected resource metadata,
            use the MCP 2025-03-26 fallback (the server's origin as the AS, its
            metadata or else ``/authorize``, ``/token``, ``/register``).
        grant: How tokens are obtained (see :data:`GrantType`).
        private_key_credential_id: Credential holding the PEM private key for
            ``private_key_jwt`` client authentication (RFC 7523 §2.2).
        signing_algorithm: JWS algorithm of the client assertion (else the key's).
        idp_token_endpoint: The enterprise IdP's token endpoint (``enterprise``).
        idp_client_id: Tether's client id at the IdP.
        idp_client_secret_credential_id: Credential holding that client's secret.
        idp_id_token_credential_id: Credential holding a static ID token (tests, or a
            service identity); otherwise the caller passes the user's ID token.
        assertion_credential_id: Credential holding the workload's JWT for the
            ``jwt_bearer`` grant (RFC 7523 §2.1, workload identity federation).
        dpop: Sender-constrained tokens (RFC 9449): ``auto`` when the AS advertises
            ``dpop_signing_alg_values_supported`` with ES256, ``always`` or ``never``
            (the default: an AS may advertise DPoP while the MCP server accepts only
            Bearer tokens).
    """

    registration: RegistrationMode = "auto"
    client_id: str | None = None
    client_secret_credential_id: str | None = None
    token_auth_method: TokenAuthMethod | None = None
    scopes: str | None = None
    authorization_params: Mapping[str, str | None] = field(
        default_factory=_empty_params
    )
    token_params: Mapping[str, str | None] = field(default_factory=_empty_params)
    require_refresh_token: bool = False
    allow_missing_pkce_metadata: bool = False
    authorization_server: str | None = None
    per_user: bool = False
    resource_match: Literal["exact", "prefix"] = "exact"
    resource_expected: str | None = None
    legacy_endpoints: bool = False
    grant: GrantType = "authorization_code"
    private_key_credential_id: str | None = None
    signing_algorithm: str | None = None
    idp_token_endpoint: str | None = None
    idp_client_id: str | None = None
    idp_client_secret_credential_id: str | None = None
    idp_id_token_credential_id: str | None = None
    assertion_credential_id: str | None = None
    dpop: Literal["auto", "always", "never"] = "never"


@dataclass(frozen=True, slots=True)
class ServerRecord:
    """A registered remote MCP server (design-notes D1; R2.1)."""

    id: str
    name: str
    url: str
    description: str = ""
    enabled: bool = True
    timeout_seconds: float = 30.0
    auth_mode: AuthMode = "none"
    header_name: str | None = None
    header_scheme: str | None = None
    credential_id: str | None = None
    oauth: OAuthSettings = field(default_factory=OAuthSettings)
    allow_networks: tuple[str, ...] = ()
    ca_bundle: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 0
    grant_epoch: int = 0
    """Bumped, in the same write, by every change that invalidates the server's
    grants; a connection made under another epoch is never used (issue 11 item 3)."""

    def replace(self, **changes: Any) -> ServerRecord:
        """Return a copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class ServerHealth:
    """What the last tool refresh learned about a server (issue 3)."""

    server_id: str
    subject: str
    status: Literal["ok", "error", "unknown"] = "unknown"
    last_error: str | None = None
    checked_at: datetime | None = None
    tools_synced_at: datetime | None = None
    protocol_version: str | None = None
    capabilities: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    """A named secret; its value is write-only outside the hub (design-notes R2.4)."""

    id: str
    name: str
    value: SecretStr
    description: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DiscoveryRecord:
    """Validated discovery results for a server (RFC 9728 §3, RFC 8414 §3)."""

    server_id: str
    resource: str
    resource_metadata_url: str | None
    authorization_servers: tuple[str, ...]
    scopes_supported: tuple[str, ...]
    issuer: str
    as_metadata: Mapping[str, Any]
    as_metadata_url: str
    fetched_at: datetime


@dataclass(frozen=True, slots=True)
class ClientRegistration:
    """The OAuth client Tether uses at one authorization server (RFC 7591 §3.2.1)."""

    server_id: str
    issuer: str
    client_id: str
    source: RegistrationSource
    auth_method: TokenAuthMethod
    client_secret: SecretStr | None = None
    redirect_uri: str | None = None
    client_secret_expires_at: datetime | None = None
    registration_access_token: SecretStr | None = None
    registration_client_uri: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Connection:
    """A grant for ``(server_id, subject)`` (design-notes D1).

    ``token_type`` is ``Bearer`` or ``DPoP``; ``dpop_key`` is the connection's
    proof-of-possession private key (PEM, sealed at rest like the tokens), made at
    connect and kept across refreshes (RFC 9449 §5: refresh tokens of public clients
    are bound to it).
    """

    server_id: str
    subject: str
    status: ConnectionStatus = "disconnected"
    access_token: SecretStr | None = None
    refresh_token: SecretStr | None = None
    token_type: str = "Bearer"  # noqa: S105 - a token type, not a secret
    expires_at: datetime | None = None
    scopes: tuple[str, ...] = ()
    required_scopes: tuple[str, ...] = ()
    issuer: str | None = None
    client_id: str | None = None
    resource: str | None = None
    connected_by: str | None = None
    connected_at: datetime | None = None
    refreshed_at: datetime | None = None
    last_error_code: str | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 0
    dpop_key: SecretStr | None = None
    retry_at: datetime | None = None
    grant_epoch: int = 0

    def replace(self, **changes: Any) -> Connection:
        """Return a copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class PendingAuthorization:
    """One started connect, looked up by ``state`` on the callback (design-notes D3.1)."""

    state: str
    server_id: str
    subject: str
    user_id: str | None
    code_verifier: SecretStr
    issuer: str
    resource: str | None
    redirect_uri: str
    client_id: str
    scopes: str | None
    created_at: datetime
    server_version: int = 0
    discovery: DiscoveryRecord | None = None
    """What this connect discovered, when the server already had stored discovery:
    it replaces the stored one only when this connect completes (issue 11 item 4)."""


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One admin action, secrets masked before it is built (design-notes R3.21)."""

    at: datetime
    actor: str | None
    action: str
    target_type: str
    target_id: str | None
    server_id: str | None = None
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    detail: str | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class ToolCacheEntry:
    """All pages of a server's ``tools/list`` for one subject (design-notes D1)."""

    server_id: str
    subject: str
    tools: Sequence[Mapping[str, Any]]
    fetched_at: datetime
    protocol_version: str | None = None
    ttl_ms: int | None = None
    """The server's ``ttlMs`` for the list (HTTP7-9); ``None`` when it gave none."""


@dataclass(frozen=True, slots=True)
class ToolsetEntry:
    """One server in a toolset; ``tools=None`` means every tool of the server."""

    server_id: str
    tools: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Toolset:
    """A named set of servers an agent may use (the reference's agent attachments)."""

    id: str
    name: str
    entries: tuple[ToolsetEntry, ...] = ()
    description: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 0


# --------------------------------------------------------------------- protocols


class ServerStore(Protocol):
    """Servers by id, with unique names."""

    async def add(self, server: ServerRecord) -> ServerRecord:
        """Insert; raise ``ValidationFailed`` if the name is taken. Returns version 1."""
        ...

    async def get(self, server_id: str) -> ServerRecord | None:
        """Return the server or ``None``."""
        ...

    async def get_many(self, server_ids: Sequence[str]) -> dict[str, ServerRecord]:
        """The servers of these ids, by id; unknown ids are absent (G-31)."""
        ...

    async def get_by_name(self, name: str) -> ServerRecord | None:
        """Return the server with this (case-insensitive) name or ``None``."""
        ...

    async def list(self) -> list[ServerRecord]:
        """All servers ordered by name."""
        ...

    async def list_page(
        self, *, limit: int = 100, after: str | None = None
    ) -> Page[ServerRecord]:
        """Servers ordered by (case-folded name, id), keyset-paginated (paging.py)."""
        ...

    async def update(
        self, server: ServerRecord, *, expected_version: int
    ) -> ServerRecord:
        """Compare-and-set write; raise ``VersionConflict`` / ``NotFound``."""
        ...

    async def delete(self, server_id: str) -> bool:
        """Delete the server and everything keyed by it; ``False`` if absent."""
        ...


class CredentialStore(Protocol):
    """Named secrets, encrypted at rest."""

    async def add(self, credential: CredentialRecord) -> CredentialRecord:
        """Insert; raise ``ValidationFailed`` if the name is taken."""
        ...

    async def get(self, credential_id: str) -> CredentialRecord | None:
        """Return the credential (value decrypted) or ``None``."""
        ...

    async def list(self) -> list[CredentialRecord]:
        """All credentials ordered by name."""
        ...

    async def update(self, credential: CredentialRecord) -> CredentialRecord:
        """Replace name/description/value; raise ``NotFound``."""
        ...

    async def delete(self, credential_id: str) -> bool:
        """Delete; ``False`` if absent."""
        ...


class DiscoveryStore(Protocol):
    """The latest validated discovery per server."""

    async def get(self, server_id: str) -> DiscoveryRecord | None:
        """Return the record or ``None``."""
        ...

    async def put(self, record: DiscoveryRecord) -> None:
        """Insert or replace."""
        ...

    async def delete(self, server_id: str) -> None:
        """Forget discovery for the server."""
        ...


class RegistrationStore(Protocol):
    """Client registrations keyed by ``(server_id, issuer)``."""

    async def get(self, server_id: str, issuer: str) -> ClientRegistration | None:
        """Return the registration or ``None``."""
        ...

    async def put(self, registration: ClientRegistration) -> None:
        """Insert or replace."""
        ...

    async def delete(self, server_id: str, issuer: str | None = None) -> None:
        """Delete one issuer's registration, or all of the server's."""
        ...


class ConnectionStore(Protocol):
    """Grants keyed by ``(server_id, subject)``, written with compare-and-set."""

    async def get(self, server_id: str, subject: str) -> Connection | None:
        """Return the connection (tokens decrypted) or ``None``."""
        ...

    async def list_page(
        self,
        server_id: str | None = None,
        *,
        limit: int = 100,
        after: str | None = None,
    ) -> Page[Connection]:
        """Connections ordered by (server, subject), keyset-paginated (paging.py)."""
        ...

    async def list(self, server_id: str | None = None) -> list[Connection]:
        """All connections, or one server's."""
        ...

    async def save(
        self, connection: Connection, *, expected_version: int
    ) -> Connection:
        """Write if the stored version equals ``expected_version`` (0: must not exist).

        Returns the stored record with ``version = expected_version + 1``; raises
        ``VersionConflict`` otherwise.
        """
        ...

    async def delete(self, server_id: str, subject: str | None = None) -> None:
        """Delete one connection, or all of the server's."""
        ...


class PendingStore(Protocol):
    """Started connects, looked up by ``state``."""

    async def put(self, pending: PendingAuthorization, *, ttl: timedelta) -> None:
        """Store for ``ttl``."""
        ...

    async def take(self, state: str) -> PendingAuthorization | None:
        """Remove and return the entry in one atomic step; ``None`` if absent/expired."""
        ...


class AuditLog(Protocol):
    """Append-only admin events."""

    async def append(self, event: AuditEvent) -> None:
        """Record one event."""
        ...

    async def list(
        self, *, server_id: str | None = None, limit: int = 100
    ) -> list[AuditEvent]:
        """Newest first."""
        ...

    async def list_page(
        self,
        *,
        server_id: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> Page[AuditEvent]:
        """Events newest first (by id), keyset-paginated (paging.py)."""
        ...


class ToolCacheStore(Protocol):
    """Tool lists and health per ``(server_id, subject)``."""

    async def get(self, server_id: str, subject: str) -> ToolCacheEntry | None:
        """Return the cached list or ``None``."""
        ...

    async def get_many(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], ToolCacheEntry]:
        """The cached lists of these ``(server_id, subject)`` pairs; misses are absent."""
        ...

    async def put(self, entry: ToolCacheEntry) -> None:
        """Insert or replace."""
        ...

    async def delete(self, server_id: str, subject: str | None = None) -> None:
        """Invalidate one subject's list, or all of the server's."""
        ...

    async def get_health(self, server_id: str, subject: str) -> ServerHealth | None:
        """Return the last recorded health or ``None``."""
        ...

    async def put_health(self, health: ServerHealth) -> None:
        """Insert or replace."""
        ...

    async def put_many(
        self, entries: Sequence[ToolCacheEntry], health: Sequence[ServerHealth]
    ) -> None:
        """Insert or replace many lists and health records in one transaction.

        All or nothing: a missing server fails the whole batch with ``NotFound``.
        For one key given twice the later one wins. A toolset's first view writes
        its servers' lists this way, a batch at a time (issue 9, G-31).
        """
        ...


class ToolsetStore(Protocol):
    """Toolsets by id, with unique names."""

    async def add(self, toolset: Toolset) -> Toolset:
        """Insert; raise ``ValidationFailed`` if the name is taken."""
        ...

    async def get(self, toolset_id: str) -> Toolset | None:
        """Return the toolset or ``None``."""
        ...

    async def get_by_name(self, name: str) -> Toolset | None:
        """Return the toolset with this name or ``None``."""
        ...

    async def list(self) -> list[Toolset]:
        """All toolsets ordered by name."""
        ...

    async def update(self, toolset: Toolset, *, expected_version: int) -> Toolset:
        """Compare-and-set write."""
        ...

    async def delete(self, toolset_id: str) -> bool:
        """Delete; ``False`` if absent."""
        ...


class LockProvider(Protocol):
    """Named mutual exclusion; in-process now, Redis or row locks for scale-out."""

    def lock(
        self, key: str, *, timeout: float = 30.0
    ) -> AbstractAsyncContextManager[None]:
        """Hold ``key`` exclusively for the ``async with`` block.

        Raises ``StorageError`` if the lock cannot be taken within ``timeout`` seconds.
        """
        ...


class LeaseStore(Protocol):
    """Named leases shared by every process using the same store.

    A lease is a row with a holder and an expiry: taking and releasing it are one short
    atomic statement each, so no database connection is held while the holder works,
    and a holder that dies loses the lease when it expires.
    """

    async def acquire(self, key: str, holder: str, *, ttl: timedelta) -> bool:
        """Take ``key`` for ``holder`` (or extend it) if free, expired or already held.

        Returns:
            ``True`` when ``holder`` now holds the lease until ``now + ttl``.
        """
        ...

    async def release(self, key: str, holder: str) -> None:
        """Give the lease up if ``holder`` still holds it."""
        ...

    async def holder(self, key: str) -> str | None:
        """Who holds ``key`` now (``None`` when free or expired); for status pages."""
        ...


def _memory_api_keys() -> ApiKeyStore:
    from tether.store.apikeys import MemoryApiKeyStore

    return MemoryApiKeyStore()


@dataclass(slots=True)
class Stores:
    """Every store the hub needs, built together by a backend factory."""

    servers: ServerStore
    credentials: CredentialStore
    discovery: DiscoveryStore
    registrations: RegistrationStore
    connections: ConnectionStore
    pending: PendingStore
    audit: AuditLog
    tools: ToolCacheStore
    toolsets: ToolsetStore
    locks: LockProvider
    leases: LeaseStore | None = None
    closers: list[Any] = field(default_factory=list)
    # the web service's API keys (store/apikeys.py); memory unless a backend sets one
    api_keys: ApiKeyStore = field(default_factory=_memory_api_keys)
    # secret-free pages and counts of connections (store/listing.py); None: generic
    listing: ConnectionListing | None = None

    async def aclose(self) -> None:
        """Close engines and pools the backend opened."""
        for closer in reversed(self.closers):
            await closer()
