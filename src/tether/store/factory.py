"""Open the stores for a database URL (memory, SQLite or PostgreSQL)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from datetime import datetime

from tether.errors import ConfigurationError
from tether.store.base import Stores
from tether.store.crypto import KeyRing

__all__ = ["MEMORY_URL", "default_sqlite_url", "open_stores"]

MEMORY_URL = "memory://"


def default_sqlite_url(path: str) -> str:
    """The SQLite URL for a database file (the default backend)."""
    return f"sqlite+aiosqlite:///{path}"


def _driver_check(url: str) -> None:
    # Name the extra before SQLAlchemy's own, less helpful, import error.
    if url.startswith("postgresql") and importlib.util.find_spec("asyncpg") is None:
        raise ConfigurationError(
            "PostgreSQL support is not installed (the asyncpg driver is missing)",
            hint="pip install 'tether-mcp[postgres]'",
        )


async def open_stores(
    url: str,
    key_ring: KeyRing,
    *,
    now: Callable[[], datetime] | None = None,
    migrate: bool = True,
) -> Stores:
    """Open every store for ``url``; close them with :meth:`Stores.aclose`.

    Args:
        url: ``memory://`` (nothing persists), ``sqlite+aiosqlite:///path/tether.db``
            or ``postgresql+asyncpg://user@host/db``.
        key_ring: Seals every secret before it is stored.
        now: Clock for timestamps and pending expiry (default: UTC wall clock).
        migrate: Upgrade a SQL database to the newest schema first.

    Raises:
        ConfigurationError: Unsupported URL or a missing driver (names the extra).
        StorageError: The database is unreachable or the migration failed.
    """
    if url == MEMORY_URL or url.startswith(MEMORY_URL):
        from tether.store.memory import open_memory_stores

        stores, _ = open_memory_stores(key_ring, now=now)
        return stores
    _driver_check(url)
    from tether.store.migrate import migrate as run_migrations
    from tether.store.sql import open_sql_stores

    if migrate:
        await run_migrations(url)
    stores, _ = open_sql_stores(url, key_ring, now=now)
    return stores
