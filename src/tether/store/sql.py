"""SQL backend: every Protocol of ``store/base.py`` on SQLAlchemy Core (async).

Two databases are supported: SQLite through ``aiosqlite`` (the default, one process) and
PostgreSQL through ``asyncpg`` (many workers). The tables are in ``schema.py`` and are
created by the Alembic migrations (``migrations.py``); engine set-up, error translation and
key rotation are in ``database.py``.

Atomic steps:

* compare-and-set writes are ``UPDATE … WHERE version = :expected … RETURNING``, and
  inserts (``expected_version == 0``) rely on the primary key, so of two concurrent
  writers one loses with :class:`~tether.errors.VersionConflict`;
* :meth:`SqlPendingStore.take` is one ``DELETE … RETURNING``, so exactly one caller gets
  a given ``state``;
* upserts are ``INSERT … ON CONFLICT DO UPDATE`` (both dialects).

Locks: lease rows (``leases`` table, :class:`SqlLeaseStore`) behind
:class:`~tether.store.lease.LeaseLockProvider`, the same code on SQLite and PostgreSQL,
so refreshes are single-flight across processes without holding a pooled connection
while the authorization server answers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tether.errors import NotFound, VersionConflict
from tether.store import rows, schema
from tether.store.apikeys import SqlApiKeyStore
from tether.store.base import (
    AuditEvent,
    ClientRegistration,
    Connection,
    CredentialRecord,
    DiscoveryRecord,
    LockProvider,
    PendingAuthorization,
    ServerHealth,
    ServerRecord,
    Stores,
    ToolCacheEntry,
    Toolset,
)
from tether.store.crypto import KeyRing
from tether.store.database import (
    SqlBackend,
    cas_update,
    conflict,
    create_engine,
    dialect_module,
    unique,
    upsert,
    upsert_many,
)
from tether.store.lease import LeaseLockProvider
from tether.store.listing import SqlConnectionListing
from tether.store.paging import Page, check_limit, decode_cursor, paged
from tether.store.rules import check_entries, name_key, utc_now

__all__ = ["open_sql_stores"]


class _Store:
    def __init__(self, backend: SqlBackend) -> None:
        self._b = backend

    async def _delete_for_server(
        self, table: sa.Table, server_id: str, column: str, value: str | None
    ) -> None:
        """Delete a server's rows, or only those whose ``column`` equals ``value``."""
        where = [table.c.server_id == server_id]
        if value is not None:
            where.append(table.c[column] == value)
        async with self._b.begin() as conn:
            await conn.execute(sa.delete(table).where(*where))


def _after(
    first: sa.ColumnElement[Any], second: sa.ColumnElement[Any], cursor: str
) -> sa.ColumnElement[bool]:
    """Rows whose (first, second) sort key comes after the cursor's (keyset paging)."""
    a, b = decode_cursor(cursor, (str, str))
    return sa.or_(first > a, sa.and_(first == a, second > b))


CHUNK = 500
"""Most ids in one ``IN (…)`` of a bulk read (SQLite binds at most 32,766)."""


def _chunks(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[n : n + CHUNK] for n in range(0, len(items), CHUNK)]


# --------------------------------------------------------------------- stores


class SqlServerStore(_Store):
    """:class:`~tether.store.base.ServerStore` on the ``servers`` table."""

    _t = schema.servers

    async def add(self, server: ServerRecord) -> ServerRecord:
        """Insert; ``ValidationFailed`` if the id or name is taken."""
        now = self._b.now()
        stored = server.replace(
            created_at=server.created_at or now,
            updated_at=server.updated_at or now,
            version=1,
        )
        async with self._b.begin(unique("server", server.id, server.name)) as conn:
            await conn.execute(
                sa.insert(self._t).values(**rows.server_row(stored), version=1)
            )
        return stored

    async def get(self, server_id: str) -> ServerRecord | None:
        """Return the server or ``None``."""
        row = await self._b.fetch_one(
            sa.select(self._t).where(self._t.c.id == server_id)
        )
        return None if row is None else rows.server_record(row)

    async def get_many(self, server_ids: Sequence[str]) -> dict[str, ServerRecord]:
        """The servers of these ids, by id; unknown ids are absent."""
        found: dict[str, ServerRecord] = {}
        for chunk in _chunks(sorted(set(server_ids))):
            query = sa.select(self._t).where(self._t.c.id.in_(chunk))
            for row in await self._b.fetch_all(query):
                record = rows.server_record(row)
                found[record.id] = record
        return found

    async def get_by_name(self, name: str) -> ServerRecord | None:
        """Case-insensitive lookup."""
        query = sa.select(self._t).where(self._t.c.name_key == name.lower())
        row = await self._b.fetch_one(query)
        return None if row is None else rows.server_record(row)

    async def list(self) -> list[ServerRecord]:
        """All servers ordered by name."""
        query = sa.select(self._t).order_by(self._t.c.name_key, self._t.c.id)
        return [rows.server_record(r) for r in await self._b.fetch_all(query)]

    async def list_page(
        self, *, limit: int = 100, after: str | None = None
    ) -> Page[ServerRecord]:
        """Servers by (case-folded name, id), keyset-paginated."""
        t = self._t
        query = (
            sa.select(t).order_by(t.c.name_key, t.c.id).limit(check_limit(limit) + 1)
        )
        if after is not None:
            query = query.where(_after(t.c.name_key, t.c.id, after))
        found = [rows.server_record(r) for r in await self._b.fetch_all(query)]
        return paged(found, limit, lambda s: (name_key(s.name), s.id))

    async def update(
        self, server: ServerRecord, *, expected_version: int
    ) -> ServerRecord:
        """Compare-and-set write."""
        row = rows.server_row(server)
        del row["created_at"]
        row["updated_at"] = server.updated_at or self._b.now()
        t = self._t
        async with self._b.begin(unique("server", server.id, server.name)) as conn:
            created = await cas_update(
                conn,
                t,
                (t.c.id == server.id,),
                expected_version,
                row,
                f"server {server.id!r}",
            )
        return server.replace(
            created_at=created,
            updated_at=row["updated_at"],
            version=expected_version + 1,
        )

    async def delete(self, server_id: str) -> bool:
        """Delete the server; foreign keys cascade to everything keyed by it."""
        async with self._b.begin() as conn:
            result = await conn.execute(
                sa.delete(self._t).where(self._t.c.id == server_id)
            )
        return bool(result.rowcount)


class SqlCredentialStore(_Store):
    """:class:`~tether.store.base.CredentialStore` on ``credentials``, values sealed."""

    _t = schema.credentials

    async def add(self, credential: CredentialRecord) -> CredentialRecord:
        """Insert; ``ValidationFailed`` if the id or name is taken."""
        now = self._b.now()
        stored = dataclasses.replace(
            credential,
            created_at=credential.created_at or now,
            updated_at=credential.updated_at or now,
        )
        handler = unique("credential", credential.id, credential.name)
        async with self._b.begin(handler) as conn:
            row = rows.credential_row(self._b.key_ring, stored)
            await conn.execute(sa.insert(self._t).values(**row))
        return stored

    async def get(self, credential_id: str) -> CredentialRecord | None:
        """Return the credential with its value opened, or ``None``."""
        query = sa.select(self._t).where(self._t.c.id == credential_id)
        row = await self._b.fetch_one(query)
        return None if row is None else rows.credential_record(self._b.key_ring, row)

    async def list(self) -> list[CredentialRecord]:
        """All credentials ordered by name."""
        query = sa.select(self._t).order_by(self._t.c.name_key, self._t.c.id)
        found = await self._b.fetch_all(query)
        return [rows.credential_record(self._b.key_ring, r) for r in found]

    async def update(self, credential: CredentialRecord) -> CredentialRecord:
        """Replace name, description and value."""
        row = rows.credential_row(self._b.key_ring, credential)
        del row["created_at"]
        row["updated_at"] = credential.updated_at or self._b.now()
        t = self._t
        handler = unique("credential", credential.id, credential.name)
        async with self._b.begin(handler) as conn:
            statement = (
                sa.update(t)
                .where(t.c.id == credential.id)
                .values(**row)
                .returning(t.c.created_at)
            )
            found = (await conn.execute(statement)).first()
        if found is None:
            raise NotFound(f"credential {credential.id!r} does not exist")
        return dataclasses.replace(
            credential, created_at=found[0], updated_at=row["updated_at"]
        )

    async def delete(self, credential_id: str) -> bool:
        """Delete; ``False`` if absent."""
        async with self._b.begin() as conn:
            result = await conn.execute(
                sa.delete(self._t).where(self._t.c.id == credential_id)
            )
        return bool(result.rowcount)


class SqlDiscoveryStore(_Store):
    """:class:`~tether.store.base.DiscoveryStore` on ``discovery``."""

    _t = schema.discovery

    async def get(self, server_id: str) -> DiscoveryRecord | None:
        """Return the record or ``None``."""
        query = sa.select(self._t).where(self._t.c.server_id == server_id)
        row = await self._b.fetch_one(query)
        return None if row is None else rows.discovery_record(row)

    async def put(self, record: DiscoveryRecord) -> None:
        """Insert or replace."""
        async with self._b.begin() as conn:
            await conn.execute(upsert(conn, self._t, rows.discovery_row(record)))

    async def delete(self, server_id: str) -> None:
        """Forget discovery for the server."""
        async with self._b.begin() as conn:
            await conn.execute(
                sa.delete(self._t).where(self._t.c.server_id == server_id)
            )


class SqlRegistrationStore(_Store):
    """:class:`~tether.store.base.RegistrationStore` on ``client_registrations``."""

    _t = schema.client_registrations

    async def get(self, server_id: str, issuer: str) -> ClientRegistration | None:
        """Return the registration (secrets opened) or ``None``."""
        t = self._t
        query = sa.select(t).where(t.c.server_id == server_id, t.c.issuer == issuer)
        row = await self._b.fetch_one(query)
        return None if row is None else rows.registration_record(self._b.key_ring, row)

    async def put(self, registration: ClientRegistration) -> None:
        """Insert or replace."""
        row = rows.registration_row(self._b.key_ring, registration, self._b.now())
        async with self._b.begin() as conn:
            await conn.execute(upsert(conn, self._t, row))

    async def delete(self, server_id: str, issuer: str | None = None) -> None:
        """Delete one issuer's registration, or all of the server's."""
        await self._delete_for_server(self._t, server_id, "issuer", issuer)


class SqlConnectionStore(_Store):
    """:class:`~tether.store.base.ConnectionStore` on ``connections``, tokens sealed."""

    _t = schema.connections

    async def get(self, server_id: str, subject: str) -> Connection | None:
        """Return the connection (tokens opened) or ``None``."""
        t = self._t
        query = sa.select(t).where(t.c.server_id == server_id, t.c.subject == subject)
        row = await self._b.fetch_one(query)
        return None if row is None else rows.connection_record(self._b.key_ring, row)

    async def list(self, server_id: str | None = None) -> list[Connection]:
        """All connections, or one server's, ordered by server and subject."""
        t = self._t
        query = sa.select(t).order_by(t.c.server_id, t.c.subject)
        if server_id is not None:
            query = query.where(t.c.server_id == server_id)
        found = await self._b.fetch_all(query)
        return [rows.connection_record(self._b.key_ring, r) for r in found]

    async def list_page(
        self,
        server_id: str | None = None,
        *,
        limit: int = 100,
        after: str | None = None,
    ) -> Page[Connection]:
        """Connections by (server, subject), keyset-paginated; only the page is read."""
        t = self._t
        query = (
            sa.select(t)
            .order_by(t.c.server_id, t.c.subject)
            .limit(check_limit(limit) + 1)
        )
        if server_id is not None:
            query = query.where(t.c.server_id == server_id)
        if after is not None:
            query = query.where(_after(t.c.server_id, t.c.subject, after))
        found = await self._b.fetch_all(query)
        conns = [rows.connection_record(self._b.key_ring, r) for r in found]
        return paged(conns, limit, lambda c: (c.server_id, c.subject))

    async def save(
        self, connection: Connection, *, expected_version: int
    ) -> Connection:
        """Compare-and-set write (0: insert; a concurrent insert loses)."""
        stored = connection.replace(
            version=expected_version + 1,
            updated_at=connection.updated_at or self._b.now(),
        )
        row = rows.connection_row(self._b.key_ring, stored)
        t = self._t
        what = f"connection {connection.server_id}/{connection.subject}"
        async with self._b.begin(conflict(what)) as conn:
            if expected_version == 0:
                await conn.execute(sa.insert(t).values(**row, version=1))
            else:
                where = (
                    t.c.server_id == connection.server_id,
                    t.c.subject == connection.subject,
                )
                try:
                    await cas_update(conn, t, where, expected_version, row, what)
                except NotFound:
                    raise VersionConflict(
                        f"{what} is at version 0, not {expected_version}"
                    ) from None
        return stored

    async def delete(self, server_id: str, subject: str | None = None) -> None:
        """Delete one connection, or all of the server's."""
        await self._delete_for_server(self._t, server_id, "subject", subject)


class SqlLeaseStore(_Store):
    """:class:`~tether.store.base.LeaseStore` on the ``leases`` table."""

    _t = schema.leases

    async def acquire(self, key: str, holder: str, *, ttl: timedelta) -> bool:
        """``INSERT … ON CONFLICT DO UPDATE … WHERE expired or ours RETURNING``."""
        now = self._b.now()
        t = self._t
        async with self._b.begin() as conn:
            dialect = dialect_module(conn)
            insert = dialect.insert(t).values(
                key=key, holder=holder, expires_at=now + ttl
            )
            statement = insert.on_conflict_do_update(
                index_elements=[t.c.key],
                set_={
                    "holder": insert.excluded.holder,
                    "expires_at": insert.excluded.expires_at,
                },
                where=sa.or_(t.c.expires_at <= now, t.c.holder == holder),
            ).returning(t.c.holder)
            row = (await conn.execute(statement)).first()
        return row is not None

    async def release(self, key: str, holder: str) -> None:
        """Delete the row if ``holder`` still holds it."""
        t = self._t
        async with self._b.begin() as conn:
            await conn.execute(sa.delete(t).where(t.c.key == key, t.c.holder == holder))

    async def holder(self, key: str) -> str | None:
        """The unexpired row's holder, if any."""
        t = self._t
        async with self._b.begin() as conn:
            row = (
                await conn.execute(
                    sa.select(t.c.holder).where(
                        t.c.key == key, t.c.expires_at > self._b.now()
                    )
                )
            ).first()
        return None if row is None else str(row[0])


class SqlPendingStore(_Store):
    """:class:`~tether.store.base.PendingStore` on ``pending_authorizations``."""

    _t = schema.pending_authorizations

    async def put(self, pending: PendingAuthorization, *, ttl: timedelta) -> None:
        """Store for ``ttl``; expired entries are purged on the way."""
        now = self._b.now()
        row = rows.pending_row(self._b.key_ring, pending, now + ttl)
        t = self._t
        async with self._b.begin() as conn:
            await conn.execute(sa.delete(t).where(t.c.expires_at <= now))
            await conn.execute(upsert(conn, t, row))

    async def take(self, state: str) -> PendingAuthorization | None:
        """``DELETE … RETURNING``: one caller gets the entry; ``None`` if expired."""
        t = self._t
        statement = sa.delete(t).where(t.c.state == state).returning(*t.columns)
        async with self._b.begin() as conn:
            row = (await conn.execute(statement)).mappings().first()
        if row is None or row["expires_at"] <= self._b.now():
            return None
        return rows.pending_record(self._b.key_ring, row)


class SqlAuditLog(_Store):
    """:class:`~tether.store.base.AuditLog` on ``audit_events``."""

    _t = schema.audit_events

    async def append(self, event: AuditEvent) -> None:
        """Record one event; the database assigns the id."""
        async with self._b.begin() as conn:
            await conn.execute(sa.insert(self._t).values(**rows.audit_row(event)))

    async def list(
        self, *, server_id: str | None = None, limit: int = 100
    ) -> list[AuditEvent]:
        """Newest first."""
        t = self._t
        query = sa.select(t).order_by(t.c.id.desc()).limit(limit)
        if server_id is not None:
            query = query.where(t.c.server_id == server_id)
        return [rows.audit_record(r) for r in await self._b.fetch_all(query)]

    async def list_page(
        self,
        *,
        server_id: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> Page[AuditEvent]:
        """Newest first by id, keyset-paginated."""
        t = self._t
        query = sa.select(t).order_by(t.c.id.desc()).limit(check_limit(limit) + 1)
        if server_id is not None:
            query = query.where(t.c.server_id == server_id)
        if after is not None:
            query = query.where(t.c.id < decode_cursor(after, (int,))[0])
        found = [rows.audit_record(r) for r in await self._b.fetch_all(query)]
        return paged(found, limit, lambda e: (e.id or 0,))


class SqlToolCacheStore(_Store):
    """:class:`~tether.store.base.ToolCacheStore` on ``tool_cache`` and ``server_health``."""

    _t = schema.tool_cache
    _h = schema.server_health

    async def get(self, server_id: str, subject: str) -> ToolCacheEntry | None:
        """Return the cached list or ``None``."""
        t = self._t
        query = sa.select(t).where(t.c.server_id == server_id, t.c.subject == subject)
        row = await self._b.fetch_one(query)
        return None if row is None else rows.tool_cache_record(row)

    async def get_many(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], ToolCacheEntry]:
        """The cached lists of these ``(server_id, subject)`` pairs; misses are absent."""
        t, wanted = self._t, set(keys)
        found: dict[tuple[str, str], ToolCacheEntry] = {}
        for chunk in _chunks(sorted({server_id for server_id, _ in wanted})):
            ids = set(chunk)
            query = sa.select(t).where(
                t.c.server_id.in_(chunk),
                t.c.subject.in_(sorted({s for i, s in wanted if i in ids})),
            )
            for row in await self._b.fetch_all(query):
                entry = rows.tool_cache_record(row)
                if (entry.server_id, entry.subject) in wanted:
                    found[entry.server_id, entry.subject] = entry
        return found

    async def put(self, entry: ToolCacheEntry) -> None:
        """Insert or replace."""
        async with self._b.begin() as conn:
            await conn.execute(upsert(conn, self._t, rows.tool_cache_row(entry)))

    async def delete(self, server_id: str, subject: str | None = None) -> None:
        """Invalidate one subject's list, or all of the server's."""
        await self._delete_for_server(self._t, server_id, "subject", subject)

    async def get_health(self, server_id: str, subject: str) -> ServerHealth | None:
        """Return the last recorded health or ``None``."""
        h = self._h
        query = sa.select(h).where(h.c.server_id == server_id, h.c.subject == subject)
        row = await self._b.fetch_one(query)
        return None if row is None else rows.health_record(row)

    async def put_health(self, health: ServerHealth) -> None:
        """Insert or replace."""
        async with self._b.begin() as conn:
            await conn.execute(upsert(conn, self._h, rows.health_row(health)))

    async def put_many(
        self, entries: Sequence[ToolCacheEntry], health: Sequence[ServerHealth]
    ) -> None:
        """Insert or replace many lists and health records in one transaction."""
        lists = {(e.server_id, e.subject): rows.tool_cache_row(e) for e in entries}
        states = {(h.server_id, h.subject): rows.health_row(h) for h in health}
        if not lists and not states:
            return
        async with self._b.begin() as conn:
            for table, batch in ((self._t, lists), (self._h, states)):
                if batch:
                    values = list(batch.values())
                    statement = upsert_many(conn, table, list(values[0]))
                    await conn.execute(statement, values)


class SqlToolsetStore(_Store):
    """:class:`~tether.store.base.ToolsetStore` on ``toolsets`` and ``toolset_entries``."""

    _t = schema.toolsets
    _e = schema.toolset_entries

    async def _load(self, where: sa.ColumnElement[bool] | None) -> list[Toolset]:
        t, e = self._t, self._e
        query = sa.select(t).order_by(t.c.name_key, t.c.id)
        entries_query = sa.select(e).join(t, e.c.toolset_id == t.c.id)
        if where is not None:
            query, entries_query = query.where(where), entries_query.where(where)
        async with self._b.begin() as conn:
            found = list((await conn.execute(query)).mappings())
            entries = list((await conn.execute(entries_query)).mappings())
        by_toolset: dict[str, list[Mapping[Any, Any]]] = {}
        for entry in entries:
            by_toolset.setdefault(entry["toolset_id"], []).append(entry)
        return [rows.toolset_record(r, by_toolset.get(r["id"], [])) for r in found]

    async def add(self, toolset: Toolset) -> Toolset:
        """Insert; ``ValidationFailed`` if the id or name is taken."""
        check_entries(toolset)
        now = self._b.now()
        stored = dataclasses.replace(
            toolset,
            created_at=toolset.created_at or now,
            updated_at=toolset.updated_at or now,
            version=1,
        )
        async with self._b.begin(unique("toolset", toolset.id, toolset.name)) as conn:
            await conn.execute(
                sa.insert(self._t).values(**rows.toolset_row(stored), version=1)
            )
            await self._write_entries(conn, stored)
        return stored

    async def _write_entries(self, conn: AsyncConnection, toolset: Toolset) -> None:
        await conn.execute(sa.delete(self._e).where(self._e.c.toolset_id == toolset.id))
        entry_rows = rows.toolset_entry_rows(toolset)
        if entry_rows:
            await conn.execute(sa.insert(self._e), entry_rows)

    async def get(self, toolset_id: str) -> Toolset | None:
        """Return the toolset or ``None``."""
        found = await self._load(self._t.c.id == toolset_id)
        return found[0] if found else None

    async def get_by_name(self, name: str) -> Toolset | None:
        """Case-insensitive lookup."""
        found = await self._load(self._t.c.name_key == name.lower())
        return found[0] if found else None

    async def list(self) -> list[Toolset]:
        """All toolsets ordered by name."""
        return await self._load(None)

    async def update(self, toolset: Toolset, *, expected_version: int) -> Toolset:
        """Compare-and-set write of the toolset and its entries."""
        check_entries(toolset)
        row = rows.toolset_row(toolset)
        del row["created_at"]
        row["updated_at"] = toolset.updated_at or self._b.now()
        t = self._t
        what = f"toolset {toolset.id!r}"
        async with self._b.begin(unique("toolset", toolset.id, toolset.name)) as conn:
            created = await cas_update(
                conn, t, (t.c.id == toolset.id,), expected_version, row, what
            )
            await self._write_entries(conn, toolset)
        return dataclasses.replace(
            toolset,
            created_at=created,
            updated_at=row["updated_at"],
            version=expected_version + 1,
        )

    async def delete(self, toolset_id: str) -> bool:
        """Delete; ``False`` if absent (entries cascade)."""
        async with self._b.begin() as conn:
            result = await conn.execute(
                sa.delete(self._t).where(self._t.c.id == toolset_id)
            )
        return bool(result.rowcount)


def open_sql_stores(
    url: str,
    key_ring: KeyRing,
    *,
    now: Callable[[], datetime] | None = None,
    pool_size: int | None = None,
) -> tuple[Stores, SqlBackend]:
    """Build every store over one engine (the schema must already be migrated).

    Args:
        url: ``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://…``.
        key_ring: Seals and opens the secrets.
        now: Clock for timestamps and pending expiry (default: UTC wall clock).
        pool_size: Database connections per process (see :func:`create_engine`).

    Returns:
        The stores (their ``aclose`` disposes the engine) and the backend, for
        :meth:`SqlBackend.rotate_secrets`.

    Raises:
        ConfigurationError: See :func:`create_engine`.
    """
    engine = create_engine(url, pool_size=pool_size)
    backend = SqlBackend(engine, key_ring, now or utc_now)
    leases = SqlLeaseStore(backend)
    locks: LockProvider = LeaseLockProvider(leases)
    stores = Stores(
        servers=SqlServerStore(backend),
        credentials=SqlCredentialStore(backend),
        discovery=SqlDiscoveryStore(backend),
        registrations=SqlRegistrationStore(backend),
        connections=SqlConnectionStore(backend),
        pending=SqlPendingStore(backend),
        audit=SqlAuditLog(backend),
        tools=SqlToolCacheStore(backend),
        toolsets=SqlToolsetStore(backend),
        locks=locks,
        leases=leases,
        closers=[backend.dispose],
        api_keys=SqlApiKeyStore(backend),
        listing=SqlConnectionListing(backend),
    )
    return stores, backend
