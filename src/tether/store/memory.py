"""In-memory backend: every Protocol of ``store/base.py`` over dicts under one lock.

For tests, demos and single-process embedding. It behaves like the SQL backend on
purpose, so the contract suite (``tests/store/contract.py``) runs unchanged against both:
secrets are sealed with the same :class:`~tether.store.crypto.KeyRing` and bound to the
same record identities, records keyed by a server require that server to exist (the SQL
foreign keys), and deleting a server cascades to what is keyed by it. Time comes from an
injected clock.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import TypeVar

import anyio

from tether.errors import NotFound, VersionConflict
from tether.store.base import (
    AuditEvent,
    ClientRegistration,
    Connection,
    CredentialRecord,
    DiscoveryRecord,
    PendingAuthorization,
    ServerHealth,
    ServerRecord,
    Stores,
    ToolCacheEntry,
    Toolset,
)
from tether.store.crypto import KeyRing
from tether.store.lease import LeaseLockProvider
from tether.store.paging import Page, check_limit, decode_cursor, paged
from tether.store.rules import (
    check_entries,
    id_taken,
    name_key,
    name_taken,
    server_missing,
    utc_now,
)
from tether.store.sealing import (
    SECRET_FIELDS,
    connection_ref,
    credential_ref,
    open_fields,
    pending_ref,
    registration_ref,
    reseal_fields,
    seal_fields,
)

__all__ = ["MemoryBackend", "open_memory_stores"]

_R = TypeVar("_R")


def _copy(record: _R) -> _R:
    # Callers may hold mutable mappings inside frozen records; never share them.
    return copy.deepcopy(record)


_CRED = SECRET_FIELDS["credential"]
_REG = SECRET_FIELDS["registration"]
_CONN = SECRET_FIELDS["connection"]
_PEND = SECRET_FIELDS["pending"]


class MemoryBackend:
    """Shared state of every memory store; one lock makes cascades atomic.

    Records are kept with their secret fields sealed (ciphertext inside
    :class:`~pydantic.SecretStr`) and are opened on every read.
    """

    def __init__(self, key_ring: KeyRing, now: Callable[[], datetime]) -> None:
        self.key_ring = key_ring
        self.now = now
        self.lock = anyio.Lock()
        self.servers: dict[str, ServerRecord] = {}
        self.credentials: dict[str, CredentialRecord] = {}
        self.discovery: dict[str, DiscoveryRecord] = {}
        self.registrations: dict[tuple[str, str], ClientRegistration] = {}
        self.connections: dict[tuple[str, str], Connection] = {}
        self.pending: dict[str, tuple[PendingAuthorization, datetime]] = {}
        self.audit: list[AuditEvent] = []
        self.tools: dict[tuple[str, str], ToolCacheEntry] = {}
        self.health: dict[tuple[str, str], ServerHealth] = {}
        self.toolsets: dict[str, Toolset] = {}
        self.leases: dict[str, tuple[str, datetime]] = {}

    def require_server(self, server_id: str) -> None:
        """Mirror the SQL foreign keys: raise ``NotFound`` for an unknown server."""
        if server_id not in self.servers:
            raise server_missing(server_id)

    def cascade_server(self, server_id: str) -> None:
        """Drop everything keyed by ``server_id`` (caller holds the lock)."""
        self.discovery.pop(server_id, None)
        for table in (self.registrations, self.connections, self.tools, self.health):
            for key in [k for k in table if k[0] == server_id]:
                del table[key]
        for state in [
            s for s, (p, _) in self.pending.items() if p.server_id == server_id
        ]:
            del self.pending[state]
        for toolset_id, toolset in self.toolsets.items():
            entries = tuple(e for e in toolset.entries if e.server_id != server_id)
            if entries != toolset.entries:
                self.toolsets[toolset_id] = dataclasses.replace(
                    toolset, entries=entries
                )

    async def rotate_secrets(self) -> dict[str, int]:
        """Re-seal every secret with the newest key; records changed per kind."""
        ring = self.key_ring
        counts = dict.fromkeys(SECRET_FIELDS, 0)
        async with self.lock:
            for cid, cred in self.credentials.items():
                new_cred = reseal_fields(
                    cred, ring, partial(credential_ref, cid), _CRED
                )
                if new_cred is not None:
                    self.credentials[cid] = new_cred
                    counts["credential"] += 1
            for key, reg in self.registrations.items():
                new_reg = reseal_fields(
                    reg, ring, partial(registration_ref, *key), _REG
                )
                if new_reg is not None:
                    self.registrations[key] = new_reg
                    counts["registration"] += 1
            for key, conn in self.connections.items():
                new_conn = reseal_fields(
                    conn, ring, partial(connection_ref, *key), _CONN
                )
                if new_conn is not None:
                    self.connections[key] = new_conn
                    counts["connection"] += 1
            for state, (pend, expires) in self.pending.items():
                new_pend = reseal_fields(pend, ring, partial(pending_ref, state), _PEND)
                if new_pend is not None:
                    self.pending[state] = (new_pend, expires)
                    counts["pending"] += 1
        return counts


class _Store:
    def __init__(self, backend: MemoryBackend) -> None:
        self._b = backend


class MemoryServerStore(_Store):
    """:class:`~tether.store.base.ServerStore` in memory."""

    def _check_name(self, server: ServerRecord) -> None:
        key = name_key(server.name)
        for other in self._b.servers.values():
            if other.id != server.id and name_key(other.name) == key:
                raise name_taken("server", server.name)

    async def add(self, server: ServerRecord) -> ServerRecord:
        """Insert; ``ValidationFailed`` if the id or name is taken."""
        async with self._b.lock:
            if server.id in self._b.servers:
                raise id_taken("server", server.id)
            self._check_name(server)
            now = self._b.now()
            stored = server.replace(
                created_at=server.created_at or now,
                updated_at=server.updated_at or now,
                version=1,
            )
            self._b.servers[server.id] = _copy(stored)
            return stored

    async def get(self, server_id: str) -> ServerRecord | None:
        """Return the server or ``None``."""
        return _copy(self._b.servers.get(server_id))

    async def get_many(self, server_ids: Sequence[str]) -> dict[str, ServerRecord]:
        """The servers of these ids, by id; unknown ids are absent."""
        found = (self._b.servers.get(i) for i in server_ids)
        return {s.id: _copy(s) for s in found if s is not None}

    async def get_by_name(self, name: str) -> ServerRecord | None:
        """Case-insensitive lookup."""
        key = name_key(name)
        found = [s for s in self._b.servers.values() if name_key(s.name) == key]
        return _copy(found[0]) if found else None

    async def list(self) -> list[ServerRecord]:
        """All servers ordered by name."""
        return _copy(
            sorted(self._b.servers.values(), key=lambda s: (name_key(s.name), s.id))
        )

    async def list_page(
        self, *, limit: int = 100, after: str | None = None
    ) -> Page[ServerRecord]:
        """Servers by (case-folded name, id), keyset-paginated."""
        check_limit(limit)
        start = decode_cursor(after, (str, str)) if after is not None else None

        def key(s: ServerRecord) -> tuple[str, str]:
            return (name_key(s.name), s.id)

        found = sorted(
            (s for s in self._b.servers.values() if start is None or key(s) > start),
            key=key,
        )
        return paged(_copy(found[: limit + 1]), limit, key)

    async def update(
        self, server: ServerRecord, *, expected_version: int
    ) -> ServerRecord:
        """Compare-and-set write."""
        async with self._b.lock:
            current = self._b.servers.get(server.id)
            if current is None:
                raise NotFound(f"server {server.id!r} does not exist")
            if current.version != expected_version:
                raise VersionConflict(
                    f"server {server.id!r} was changed by someone else"
                )
            self._check_name(server)
            stored = server.replace(
                created_at=current.created_at,
                updated_at=server.updated_at or self._b.now(),
                version=expected_version + 1,
            )
            self._b.servers[server.id] = _copy(stored)
            return stored

    async def delete(self, server_id: str) -> bool:
        """Delete the server and cascade."""
        async with self._b.lock:
            if self._b.servers.pop(server_id, None) is None:
                return False
            self._b.cascade_server(server_id)
            return True


class MemoryCredentialStore(_Store):
    """:class:`~tether.store.base.CredentialStore` in memory, values sealed."""

    def _open(self, sealed: CredentialRecord) -> CredentialRecord:
        return open_fields(
            sealed, self._b.key_ring, partial(credential_ref, sealed.id), _CRED
        )

    def _check_name(self, credential: CredentialRecord) -> None:
        key = name_key(credential.name)
        for other in self._b.credentials.values():
            if other.id != credential.id and name_key(other.name) == key:
                raise name_taken("credential", credential.name)

    def _store(self, credential: CredentialRecord) -> CredentialRecord:
        ref = partial(credential_ref, credential.id)
        self._b.credentials[credential.id] = seal_fields(
            credential, self._b.key_ring, ref, _CRED
        )
        return credential

    async def add(self, credential: CredentialRecord) -> CredentialRecord:
        """Insert; ``ValidationFailed`` if the id or name is taken."""
        async with self._b.lock:
            if credential.id in self._b.credentials:
                raise id_taken("credential", credential.id)
            self._check_name(credential)
            now = self._b.now()
            return self._store(
                dataclasses.replace(
                    credential,
                    created_at=credential.created_at or now,
                    updated_at=credential.updated_at or now,
                )
            )

    async def get(self, credential_id: str) -> CredentialRecord | None:
        """Return the credential with its value opened, or ``None``."""
        sealed = self._b.credentials.get(credential_id)
        return None if sealed is None else self._open(sealed)

    async def list(self) -> list[CredentialRecord]:
        """All credentials ordered by name."""
        ordered = sorted(
            self._b.credentials.values(), key=lambda c: (name_key(c.name), c.id)
        )
        return [self._open(c) for c in ordered]

    async def update(self, credential: CredentialRecord) -> CredentialRecord:
        """Replace name, description and value."""
        async with self._b.lock:
            current = self._b.credentials.get(credential.id)
            if current is None:
                raise NotFound(f"credential {credential.id!r} does not exist")
            self._check_name(credential)
            return self._store(
                dataclasses.replace(
                    credential,
                    created_at=current.created_at,
                    updated_at=credential.updated_at or self._b.now(),
                )
            )

    async def delete(self, credential_id: str) -> bool:
        """Delete; ``False`` if absent."""
        async with self._b.lock:
            return self._b.credentials.pop(credential_id, None) is not None


class MemoryDiscoveryStore(_Store):
    """:class:`~tether.store.base.DiscoveryStore` in memory."""

    async def get(self, server_id: str) -> DiscoveryRecord | None:
        """Return the record or ``None``."""
        return _copy(self._b.discovery.get(server_id))

    async def put(self, record: DiscoveryRecord) -> None:
        """Insert or replace."""
        async with self._b.lock:
            self._b.require_server(record.server_id)
            self._b.discovery[record.server_id] = _copy(record)

    async def delete(self, server_id: str) -> None:
        """Forget discovery for the server."""
        async with self._b.lock:
            self._b.discovery.pop(server_id, None)


class MemoryRegistrationStore(_Store):
    """:class:`~tether.store.base.RegistrationStore` in memory, secrets sealed."""

    async def get(self, server_id: str, issuer: str) -> ClientRegistration | None:
        """Return the registration (secrets opened) or ``None``."""
        sealed = self._b.registrations.get((server_id, issuer))
        if sealed is None:
            return None
        ref = partial(registration_ref, server_id, issuer)
        return _copy(open_fields(sealed, self._b.key_ring, ref, _REG))

    async def put(self, registration: ClientRegistration) -> None:
        """Insert or replace."""
        key = (registration.server_id, registration.issuer)
        async with self._b.lock:
            self._b.require_server(registration.server_id)
            if registration.created_at is None:
                registration = dataclasses.replace(
                    registration, created_at=self._b.now()
                )
            ref = partial(registration_ref, *key)
            self._b.registrations[key] = _copy(
                seal_fields(registration, self._b.key_ring, ref, _REG)
            )

    async def delete(self, server_id: str, issuer: str | None = None) -> None:
        """Delete one issuer's registration, or all of the server's."""
        async with self._b.lock:
            for key in list(self._b.registrations):
                if key[0] == server_id and issuer in (None, key[1]):
                    del self._b.registrations[key]


class MemoryConnectionStore(_Store):
    """:class:`~tether.store.base.ConnectionStore` in memory, tokens sealed."""

    def _open(self, sealed: Connection) -> Connection:
        ref = partial(connection_ref, sealed.server_id, sealed.subject)
        return open_fields(sealed, self._b.key_ring, ref, _CONN)

    async def get(self, server_id: str, subject: str) -> Connection | None:
        """Return the connection (tokens opened) or ``None``."""
        sealed = self._b.connections.get((server_id, subject))
        return None if sealed is None else self._open(sealed)

    async def list(self, server_id: str | None = None) -> list[Connection]:
        """All connections, or one server's, ordered by server and subject."""
        return [
            self._open(conn)
            for key, conn in sorted(self._b.connections.items())
            if server_id in (None, key[0])
        ]

    async def list_page(
        self,
        server_id: str | None = None,
        *,
        limit: int = 100,
        after: str | None = None,
    ) -> Page[Connection]:
        """Connections by (server, subject), keyset-paginated; only the page is opened."""
        check_limit(limit)
        start = decode_cursor(after, (str, str)) if after is not None else None
        keys = sorted(
            key
            for key in self._b.connections
            if server_id in (None, key[0]) and (start is None or key > start)
        )[: limit + 1]
        found = [self._open(self._b.connections[key]) for key in keys]
        return paged(found, limit, lambda c: (c.server_id, c.subject))

    async def save(
        self, connection: Connection, *, expected_version: int
    ) -> Connection:
        """Compare-and-set write (0: must not exist yet)."""
        key = (connection.server_id, connection.subject)
        async with self._b.lock:
            self._b.require_server(connection.server_id)
            current = self._b.connections.get(key)
            version = 0 if current is None else current.version
            if version != expected_version:
                raise VersionConflict(
                    f"connection {'/'.join(key)} is at version {version}, "
                    f"not {expected_version}"
                )
            stored = connection.replace(
                version=expected_version + 1,
                updated_at=connection.updated_at or self._b.now(),
            )
            ref = partial(connection_ref, *key)
            self._b.connections[key] = seal_fields(stored, self._b.key_ring, ref, _CONN)
            return stored

    async def delete(self, server_id: str, subject: str | None = None) -> None:
        """Delete one connection, or all of the server's."""
        async with self._b.lock:
            for key in list(self._b.connections):
                if key[0] == server_id and subject in (None, key[1]):
                    del self._b.connections[key]


class MemoryPendingStore(_Store):
    """:class:`~tether.store.base.PendingStore` in memory; ``take`` pops under the lock."""

    async def put(self, pending: PendingAuthorization, *, ttl: timedelta) -> None:
        """Store for ``ttl``; expired entries are dropped on the way."""
        async with self._b.lock:
            self._b.require_server(pending.server_id)
            now = self._b.now()
            for state in [s for s, (_, exp) in self._b.pending.items() if exp <= now]:
                del self._b.pending[state]
            ref = partial(pending_ref, pending.state)
            sealed = seal_fields(pending, self._b.key_ring, ref, _PEND)
            self._b.pending[pending.state] = (sealed, now + ttl)

    async def take(self, state: str) -> PendingAuthorization | None:
        """Remove and return the entry; ``None`` if absent or expired."""
        async with self._b.lock:
            item = self._b.pending.pop(state, None)
        if item is None or item[1] <= self._b.now():
            return None
        return open_fields(
            item[0], self._b.key_ring, partial(pending_ref, state), _PEND
        )


class MemoryAuditLog(_Store):
    """:class:`~tether.store.base.AuditLog` in memory."""

    async def append(self, event: AuditEvent) -> None:
        """Record one event with the next id."""
        async with self._b.lock:
            next_id = len(self._b.audit) + 1
            self._b.audit.append(_copy(dataclasses.replace(event, id=next_id)))

    async def list(
        self, *, server_id: str | None = None, limit: int = 100
    ) -> list[AuditEvent]:
        """Newest first."""
        events = [
            e for e in reversed(self._b.audit) if server_id in (None, e.server_id)
        ]
        return _copy(events[:limit])

    async def list_page(
        self,
        *,
        server_id: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> Page[AuditEvent]:
        """Newest first by id, keyset-paginated."""
        check_limit(limit)
        before = decode_cursor(after, (int,))[0] if after is not None else None
        events: list[AuditEvent] = []
        for event in reversed(self._b.audit):
            if len(events) > limit:
                break
            if server_id in (None, event.server_id) and (
                before is None or (event.id or 0) < int(before)
            ):
                events.append(event)
        return paged(_copy(events), limit, lambda e: (e.id or 0,))


class MemoryToolCacheStore(_Store):
    """:class:`~tether.store.base.ToolCacheStore` in memory."""

    async def get(self, server_id: str, subject: str) -> ToolCacheEntry | None:
        """Return the cached list or ``None``."""
        return _copy(self._b.tools.get((server_id, subject)))

    async def get_many(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], ToolCacheEntry]:
        """The cached lists of these ``(server_id, subject)`` pairs; misses are absent."""
        found = ((k, self._b.tools.get(k)) for k in keys)
        return {k: _copy(e) for k, e in found if e is not None}

    async def put(self, entry: ToolCacheEntry) -> None:
        """Insert or replace."""
        async with self._b.lock:
            self._b.require_server(entry.server_id)
            self._b.tools[entry.server_id, entry.subject] = _copy(entry)

    async def delete(self, server_id: str, subject: str | None = None) -> None:
        """Invalidate one subject's list, or all of the server's."""
        async with self._b.lock:
            for key in list(self._b.tools):
                if key[0] == server_id and subject in (None, key[1]):
                    del self._b.tools[key]

    async def get_health(self, server_id: str, subject: str) -> ServerHealth | None:
        """Return the last recorded health or ``None``."""
        return _copy(self._b.health.get((server_id, subject)))

    async def put_health(self, health: ServerHealth) -> None:
        """Insert or replace."""
        async with self._b.lock:
            self._b.require_server(health.server_id)
            self._b.health[health.server_id, health.subject] = _copy(health)

    async def put_many(
        self, entries: Sequence[ToolCacheEntry], health: Sequence[ServerHealth]
    ) -> None:
        """Insert or replace many lists and health records, all or nothing."""
        async with self._b.lock:
            for server_id in {e.server_id for e in entries} | {
                h.server_id for h in health
            }:
                self._b.require_server(server_id)
            for entry in entries:
                self._b.tools[entry.server_id, entry.subject] = _copy(entry)
            for state in health:
                self._b.health[state.server_id, state.subject] = _copy(state)


class MemoryToolsetStore(_Store):
    """:class:`~tether.store.base.ToolsetStore` in memory."""

    def _check(self, toolset: Toolset) -> None:
        key = name_key(toolset.name)
        for other in self._b.toolsets.values():
            if other.id != toolset.id and name_key(other.name) == key:
                raise name_taken("toolset", toolset.name)
        check_entries(toolset)
        for entry in toolset.entries:
            self._b.require_server(entry.server_id)

    async def add(self, toolset: Toolset) -> Toolset:
        """Insert; ``ValidationFailed`` if the id or name is taken."""
        async with self._b.lock:
            if toolset.id in self._b.toolsets:
                raise id_taken("toolset", toolset.id)
            self._check(toolset)
            now = self._b.now()
            stored = dataclasses.replace(
                toolset,
                created_at=toolset.created_at or now,
                updated_at=toolset.updated_at or now,
                version=1,
            )
            self._b.toolsets[toolset.id] = _copy(stored)
            return stored

    async def get(self, toolset_id: str) -> Toolset | None:
        """Return the toolset or ``None``."""
        return _copy(self._b.toolsets.get(toolset_id))

    async def get_by_name(self, name: str) -> Toolset | None:
        """Case-insensitive lookup."""
        key = name_key(name)
        found = [t for t in self._b.toolsets.values() if name_key(t.name) == key]
        return _copy(found[0]) if found else None

    async def list(self) -> list[Toolset]:
        """All toolsets ordered by name."""
        return _copy(
            sorted(self._b.toolsets.values(), key=lambda t: (name_key(t.name), t.id))
        )

    async def update(self, toolset: Toolset, *, expected_version: int) -> Toolset:
        """Compare-and-set write."""
        async with self._b.lock:
            current = self._b.toolsets.get(toolset.id)
            if current is None:
                raise NotFound(f"toolset {toolset.id!r} does not exist")
            if current.version != expected_version:
                raise VersionConflict(
                    f"toolset {toolset.id!r} was changed by someone else"
                )
            self._check(toolset)
            stored = dataclasses.replace(
                toolset,
                created_at=current.created_at,
                updated_at=toolset.updated_at or self._b.now(),
                version=expected_version + 1,
            )
            self._b.toolsets[toolset.id] = _copy(stored)
            return stored

    async def delete(self, toolset_id: str) -> bool:
        """Delete; ``False`` if absent."""
        async with self._b.lock:
            return self._b.toolsets.pop(toolset_id, None) is not None


class MemoryLeaseStore(_Store):
    """:class:`~tether.store.base.LeaseStore` in memory (one process)."""

    async def acquire(self, key: str, holder: str, *, ttl: timedelta) -> bool:
        """Take or extend the lease if free, expired or already ``holder``'s."""
        now = self._b.now()
        async with self._b.lock:
            current = self._b.leases.get(key)
            if current is not None and current[0] != holder and current[1] > now:
                return False
            self._b.leases[key] = (holder, now + ttl)
            return True

    async def release(self, key: str, holder: str) -> None:
        """Drop the lease if ``holder`` still holds it."""
        async with self._b.lock:
            current = self._b.leases.get(key)
            if current is not None and current[0] == holder:
                del self._b.leases[key]

    async def holder(self, key: str) -> str | None:
        """The unexpired lease's holder, if any."""
        async with self._b.lock:
            current = self._b.leases.get(key)
        if current is None or current[1] <= self._b.now():
            return None
        return current[0]


def open_memory_stores(
    key_ring: KeyRing, *, now: Callable[[], datetime] | None = None
) -> tuple[Stores, MemoryBackend]:
    """Build every store over one fresh :class:`MemoryBackend`.

    Args:
        key_ring: Seals the secrets, exactly as the SQL backend does.
        now: Clock for timestamps and pending expiry (default: UTC wall clock).

    Returns:
        The stores and the backend (for :meth:`MemoryBackend.rotate_secrets`).
    """
    backend = MemoryBackend(key_ring, now or utc_now)
    leases = MemoryLeaseStore(backend)
    stores = Stores(
        servers=MemoryServerStore(backend),
        credentials=MemoryCredentialStore(backend),
        discovery=MemoryDiscoveryStore(backend),
        registrations=MemoryRegistrationStore(backend),
        connections=MemoryConnectionStore(backend),
        pending=MemoryPendingStore(backend),
        audit=MemoryAuditLog(backend),
        tools=MemoryToolCacheStore(backend),
        toolsets=MemoryToolsetStore(backend),
        locks=LeaseLockProvider(leases),
        leases=leases,
    )
    return stores, backend
