"""API keys for the web service: stored hashed, never in clear (design-notes D4).

A key is 32 random bytes, shown once at creation as ``tk_<id>_<secret>``; only the
SHA-256 of the whole key is stored. SHA-256 suffices because the key has 256 bits of
entropy (no dictionary to attack), and lookups are by the hash, compared again in
constant time by the caller.

Two roles: ``admin`` (everything) and ``app`` (acts only for the users it names in each
request, and only for its own users: an app key's ``id`` is part of every subject it
acts for).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, Protocol

import sqlalchemy as sa

from tether.store import schema
from tether.store.database import SqlBackend, unique
from tether.store.rules import id_taken, name_taken, utc_now

__all__ = [
    "ApiKey",
    "ApiKeyRole",
    "ApiKeyStore",
    "MemoryApiKeyStore",
    "SqlApiKeyStore",
]

ApiKeyRole = Literal["admin", "app"]


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One API key's record (the key itself is never stored).

    Attributes:
        id: Public identifier (also the prefix of the key).
        name: Label given at creation (unique).
        role: ``admin`` or ``app``.
        app: For ``app`` keys, the application the key belongs to: the namespace of the
            users it acts for. Several keys may share one (rotation).
        key_hash: Hex SHA-256 of the full key.
        created_at: Creation time.
        revoked_at: When it was revoked; a revoked key authenticates nothing.
    """

    id: str
    name: str
    role: ApiKeyRole
    key_hash: str
    app: str | None = None
    created_at: datetime | None = None
    revoked_at: datetime | None = None


class ApiKeyStore(Protocol):
    """Persistence of API keys."""

    async def add(self, key: ApiKey) -> ApiKey:
        """Insert; ``ValidationFailed`` if the id or name is taken."""
        ...

    async def get(self, key_id: str) -> ApiKey | None:
        """The key with this id, revoked or not, or ``None``."""
        ...

    async def get_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key whose hash is ``key_hash``, revoked or not, or ``None``."""
        ...

    async def list(self) -> list[ApiKey]:
        """Every key, oldest first."""
        ...

    async def revoke(self, ref: str) -> ApiKey | None:
        """Mark the key with this id or name revoked; ``None`` if there is none."""
        ...


class MemoryApiKeyStore:
    """:class:`ApiKeyStore` in a dict (tests, ``memory://``)."""

    def __init__(self) -> None:
        self._keys: dict[str, ApiKey] = {}

    async def add(self, key: ApiKey) -> ApiKey:
        """Insert; ``ValidationFailed`` if the id or name is taken."""
        if key.id in self._keys:
            raise id_taken("API key", key.id)
        if any(k.name.lower() == key.name.lower() for k in self._keys.values()):
            raise name_taken("API key", key.name)
        stored = replace(key, created_at=key.created_at or utc_now())
        self._keys[key.id] = stored
        return stored

    async def get(self, key_id: str) -> ApiKey | None:
        """The key with this id, or ``None``."""
        return self._keys.get(key_id)

    async def get_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, or ``None``."""
        return next((k for k in self._keys.values() if k.key_hash == key_hash), None)

    async def list(self) -> list[ApiKey]:
        """Every key, oldest first."""
        return sorted(self._keys.values(), key=lambda k: k.created_at or utc_now())

    async def revoke(self, ref: str) -> ApiKey | None:
        """Revoke by id or name."""
        for key in self._keys.values():
            if ref in (key.id, key.name):
                revoked = replace(key, revoked_at=key.revoked_at or utc_now())
                self._keys[key.id] = revoked
                return revoked
        return None


class SqlApiKeyStore:
    """:class:`ApiKeyStore` on the ``api_keys`` table."""

    def __init__(self, backend: SqlBackend) -> None:
        self._b = backend
        self._t = schema.api_keys

    async def add(self, key: ApiKey) -> ApiKey:
        """Insert; ``ValidationFailed`` if the id or name is taken."""
        stored = replace(key, created_at=key.created_at or self._b.now())
        async with self._b.begin(unique("API key", key.id, key.name)) as conn:
            await conn.execute(
                sa.insert(self._t).values(
                    id=stored.id,
                    name=stored.name,
                    name_key=stored.name.lower(),
                    role=stored.role,
                    app=stored.app,
                    key_hash=stored.key_hash,
                    created_at=stored.created_at,
                    revoked_at=stored.revoked_at,
                )
            )
        return stored

    async def get(self, key_id: str) -> ApiKey | None:
        """The key with this id, or ``None``."""
        row = await self._b.fetch_one(sa.select(self._t).where(self._t.c.id == key_id))
        return None if row is None else _record(row)

    async def get_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, or ``None``."""
        row = await self._b.fetch_one(
            sa.select(self._t).where(self._t.c.key_hash == key_hash)
        )
        return None if row is None else _record(row)

    async def list(self) -> list[ApiKey]:
        """Every key, oldest first."""
        query = sa.select(self._t).order_by(self._t.c.created_at, self._t.c.id)
        return [_record(r) for r in await self._b.fetch_all(query)]

    async def revoke(self, ref: str) -> ApiKey | None:
        """Revoke by id or name."""
        t = self._t
        async with self._b.begin() as conn:
            await conn.execute(
                sa.update(t)
                .where(sa.or_(t.c.id == ref, t.c.name == ref), t.c.revoked_at.is_(None))
                .values(revoked_at=self._b.now())
            )
            row = (
                (
                    await conn.execute(
                        sa.select(t).where(sa.or_(t.c.id == ref, t.c.name == ref))
                    )
                )
                .mappings()
                .first()
            )
        return None if row is None else _record(row)


def _record(row: Any) -> ApiKey:
    get = row.__getitem__
    role: ApiKeyRole = "admin" if get("role") == "admin" else "app"
    return ApiKey(
        id=get("id"),
        name=get("name"),
        role=role,
        key_hash=get("key_hash"),
        app=get("app"),
        created_at=get("created_at"),
        revoked_at=get("revoked_at"),
    )
