"""Open the stores for a database URL (memory, SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pydantic import SecretStr

from tether.errors import ConfigurationError, StorageError
from tether.store.base import Stores
from tether.store.crypto import KeyRing, key_file_exists, load_key_file

__all__ = [
    "FRESH_START_HINT",
    "MEMORY_URL",
    "check_database",
    "default_sqlite_url",
    "open_key_ring",
    "open_stores",
]

FRESH_START_HINT = (
    "restore it from a backup; to start over with an empty store instead (every "
    "server, credential and grant is lost), run with `--fresh-start` or set "
    "TETHER_FRESH_START=1"
)

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
    pool_size: int | None = None,
) -> Stores:
    """Open every store for ``url``; close them with :meth:`Stores.aclose`.

    Args:
        url: ``memory://`` (nothing persists), ``sqlite+aiosqlite:///path/tether.db``
            or ``postgresql+asyncpg://user@host/db``.
        key_ring: Seals every secret before it is stored.
        now: Clock for timestamps and pending expiry (default: UTC wall clock).
        migrate: Upgrade a SQL database to the newest schema first.
        pool_size: Database connections per process (SQL only; default: SQLAlchemy's).

    Raises:
        ConfigurationError: Unsupported URL or a missing driver (names the extra).
        StorageError: The database is unreachable, a SQLite file fails
            ``PRAGMA quick_check``, or the migration failed.
    """
    if url == MEMORY_URL or url.startswith(MEMORY_URL):
        from tether.store.memory import open_memory_stores

        stores, _ = open_memory_stores(key_ring, now=now)
        return stores
    _driver_check(url)
    from tether.store.database import sqlite_path
    from tether.store.migrate import migrate as run_migrations
    from tether.store.sql import open_sql_stores

    path = sqlite_path(url)
    if path is not None and path.is_file() and path.stat().st_size:
        await _refuse_damaged(path)  # a damaged file is never written to
    if migrate:
        await run_migrations(url)
    stores, _ = open_sql_stores(url, key_ring, now=now, pool_size=pool_size)
    return stores


async def check_database(url: str, *, key_file_in_use: bool, fresh_start: bool) -> None:
    """Refuse to start over silently.

    * A SQLite file that fails ``PRAGMA quick_check`` is refused: a damaged file is
      never written to.
    * A SQLite file that is missing or empty beside a key file that is in use means the
      database was lost: refused unless ``fresh_start`` (the operator's explicit "start
      over") is set. On a first start the database is created before the key file, so
      a key file without a database never comes from an interrupted first start.

    Args:
        url: The database URL (only SQLite files are checked).
        key_file_in_use: A key file exists (keys come from the file, not a setting).
        fresh_start: The operator asked for an empty store.

    Raises:
        StorageError: The file is damaged, or missing while the key file exists.
    """
    from tether.store.database import sqlite_path

    path = sqlite_path(url)
    if path is None:
        return
    if path.is_file() and path.stat().st_size:
        await _refuse_damaged(path)
        return
    if key_file_in_use and not fresh_start:
        state = "is empty" if path.exists() else "is missing"
        raise StorageError(
            f"the database file {path} {state}, but the key file exists, so Tether "
            "has stored data here before",
            hint=FRESH_START_HINT,
        )


# Files that passed the check in this process, by (mtime, size): the shells check before
# opening the key ring, and open_stores checks again for embedders without the cost.
_checked: dict[Path, tuple[int, int]] = {}


async def _refuse_damaged(path: Path) -> None:
    """Refuse a SQLite file that fails ``PRAGMA quick_check``.

    Raises:
        StorageError: The file is damaged (or not a database); the hint says restore.
    """
    from tether.store.database import DAMAGED_HINT

    problem = await asyncio.to_thread(_quick_check_once, path)
    if problem is not None:
        raise StorageError(
            f"the database file {path} fails its integrity check: {problem}",
            hint=DAMAGED_HINT,
        )


def _quick_check_once(path: Path) -> str | None:
    from tether.store.database import sqlite_quick_check

    info = path.stat()
    stamp = (info.st_mtime_ns, info.st_size)
    if _checked.get(path) == stamp:
        return None
    problem = sqlite_quick_check(path)
    if problem is None:
        _checked[path] = stamp
    return problem


async def open_key_ring(
    url: str,
    *,
    keys: str | SecretStr | None,
    key_file: str | os.PathLike[str],
    fresh_start: bool = False,
) -> KeyRing:
    """Check the database, then return the key ring for it (the shells' start-up).

    Keys come from ``keys`` (a setting) when given, else from ``key_file``. A missing
    key file is created only when the database holds no encrypted secret: generating
    a new key beside secrets sealed with a lost one would make them unreadable and mix
    keys in later writes.

    Raises:
        ConfigurationError: A damaged key file, or a missing one while the database
            holds encrypted secrets.
        StorageError: As :func:`check_database`.
    """
    file = Path(key_file)
    file_in_use = keys is None and key_file_exists(file)
    await check_database(url, key_file_in_use=file_in_use, fresh_start=fresh_start)
    if keys is not None:
        return KeyRing.from_string(keys)
    if file_in_use:
        return load_key_file(file, create=False)
    sealed = await _sealed_secrets(url)
    if sealed:
        raise ConfigurationError(
            f"the key file {file} is missing, but the database holds {sealed} "
            "records with encrypted secrets; a new key could not open them",
            hint=f"restore {file} from a backup (or set TETHER_KEY_FILE to where it "
            "is, or put its keys in TETHER_ENCRYPTION_KEYS)",
        )
    await _create_database_first(url)
    return load_key_file(file, create=True)


async def _sealed_secrets(url: str) -> int:
    from tether.store.database import count_sealed_secrets, sqlite_path

    if url.startswith(MEMORY_URL):
        return 0
    path = sqlite_path(url)
    if path is not None and not (path.is_file() and path.stat().st_size):
        return 0  # nothing to open (and opening would create the file)
    _driver_check(url)
    return await count_sealed_secrets(url)


async def _create_database_first(url: str) -> None:
    # A first start creates the SQLite database before the key file, so a key file
    # never stands beside a database an interrupted start did not create.
    from tether.store.database import sqlite_path
    from tether.store.migrate import migrate as run_migrations

    path = sqlite_path(url)
    if path is not None and not (path.is_file() and path.stat().st_size):
        await run_migrations(url)
